"""Optional statistical NER: Presidio's analyzer with a spaCy pipeline, for people's names.

Off by default: the embedded detectors need no model, and none can be
downloaded at run time here. A site that installs a spaCy pipeline package
turns it on with

    SPANDA_NER=presidio
    SPANDA_NER_MODEL=en_core_web_lg   # the installed pipeline's package name

Its PERSON findings join the scrubber's as NAME spans (the embedded detectors
keep every other category: they are checksum- and format-validated, and
faster). Presidio and spaCy are imported only when the setting is on, so the
scrubber's start-up and the code location's load do not pay for them.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from spanda_assets.lib.errors import ConfigError
from spanda_assets.lib.privacy.detectors.base import Span

ENV_NER = "SPANDA_NER"
ENV_NER_MODEL = "SPANDA_NER_MODEL"
DEFAULT_MODEL = "en_core_web_lg"
ENGINES = ("", "off", "presidio")


def engine_name() -> str:
    name = os.environ.get(ENV_NER, "").strip().lower()
    if name not in ENGINES:
        raise ConfigError(f"{ENV_NER}={name!r}: expected 'presidio' or nothing (off)")
    return "" if name == "off" else name


@cache
def _analyzer(model: str) -> Any:
    import spacy  # heavy: only when a site turned NER on
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    if not spacy.util.is_package(model):
        raise ConfigError(
            f"{ENV_NER}=presidio needs the spaCy pipeline {model!r} installed as a package "
            f"(set {ENV_NER_MODEL} to the installed one, or unset {ENV_NER})"
        )
    engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": model}])
    return AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])


def ner_spans(text: str) -> list[Span]:
    """PERSON findings of Presidio's analyzer as NAME spans; [] when NER is off."""
    if engine_name() != "presidio":
        return []
    analyzer = _analyzer(os.environ.get(ENV_NER_MODEL, DEFAULT_MODEL))
    results = analyzer.analyze(text=text, language="en", entities=["PERSON"])
    return [Span("NAME", r.start, r.end) for r in results if r.score >= 0.5]
