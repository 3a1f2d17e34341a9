"""`dataset_description.json`: the metadata every submission carries (DataCite-like keys)."""

from __future__ import annotations

from pathlib import Path

from spanda_assets.lib.submissions.validate.context import Context
from spanda_assets.lib.submissions.validate.rules import DESCRIPTION


def check_description(p: Path, ctx: Context) -> None:
    """Required and recommended keys, and a declared consent basis."""
    doc = ctx.load_json(p)
    if doc is None:
        return
    if not isinstance(doc, dict):
        ctx.add("JSON_INVALID", DESCRIPTION, detail="the top level must be an object")
        return
    spec = ctx.rules["dataset_description"]
    for key in spec["required"]:
        if doc.get(key) in (None, "", []):
            ctx.add("JSON_KEY_REQUIRED", DESCRIPTION, key=key)
    for key in spec["recommended"]:
        if doc.get(key) in (None, "", []):
            ctx.add("JSON_KEY_RECOMMENDED", DESCRIPTION, key=key)
    if doc.get("ConsentBasis") in (None, "", []):
        ctx.add("CONSENT_BASIS_MISSING", DESCRIPTION)
