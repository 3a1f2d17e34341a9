"""`spanda labels export` and `spanda labels import` over the local annotation store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
from click.testing import CliRunner

from spanda_assets.cli import main
from spanda_assets.lib.labeling.store import AnnotationStore


def _seeded_store() -> AnnotationStore:
    store = AnnotationStore()
    store.add_tasks(
        pa.table(
            {
                "post_key": ["ps_a", "ps_b"],
                "body": ["I cannot submit, the deadline is tonight", "thanks for the notes"],
                "prelabel": ["urgent", "not_urgent"],
                "confidence": [0.8, 0.67],
                "model_version": ["lf-abc"] * 2,
            }
        )
    )
    store.add_annotation("ps_a", "urgent", completed_by=1)
    return store


def test_export_writes_every_task_in_label_studio_format(tmp_path: Path) -> None:
    _seeded_store()
    out_file = tmp_path / "export.json"
    out = CliRunner().invoke(main, ["labels", "export", str(out_file)])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("2 tasks from ")
    tasks = json.loads(out_file.read_text())
    assert [t["data"]["post_key"] for t in tasks] == ["ps_a", "ps_b"]
    assert tasks[0]["annotations"][0]["result"][0]["value"]["choices"] == ["urgent"]
    assert tasks[1]["annotations"] == []
    assert tasks[1]["predictions"][0]["model_version"] == "lf-abc"


def test_import_merges_by_post_key_and_twice_adds_nothing(
    tmp_path: Path, spanda_home: Path
) -> None:
    exported = tmp_path / "export.json"
    _seeded_store().export(exported)
    # another platform: a fresh SPANDA_HOME, as on a second machine
    (spanda_home / "labels" / "annotations.json").unlink()
    runner = CliRunner()
    first = runner.invoke(main, ["labels", "import", str(exported)])
    assert first.exit_code == 0, first.output
    assert "2 new tasks, 1 new annotations, 0 already in" in first.output
    second = runner.invoke(main, ["labels", "import", str(exported)])
    assert "0 new tasks, 0 new annotations, 1 already in" in second.output
    rows = AnnotationStore().annotations_since().to_pylist()
    assert [(r["post_key"], r["label"], r["completed_by"]) for r in rows] == [
        ("ps_a", "urgent", "1")
    ]


def test_import_of_a_wrong_file_names_task_line_and_field_and_writes_nothing(
    tmp_path: Path,
) -> None:
    store = _seeded_store()
    before = store.path.read_bytes()
    bad = tmp_path / "bad.json"
    bad.write_text(
        '[\n {"id": 1, "data": {"post_key": "ps_z", "body": "x"},\n'
        '  "annotations": [{"id": 1, "completed_by": 2, "created_at": "2026-10-01T09:00:00Z",'
        ' "updated_at": "2026-10-01T09:00:00Z", "result": [{"from_name": "urgency",'
        ' "to_name": "text", "type": "choices", "value": {"choices": "urgent"}}]}]}\n]\n'
    )
    out = CliRunner().invoke(main, ["labels", "import", str(bad)])
    assert out.exit_code == 2
    assert (
        f"error: {bad}, task 0 (line 2): annotations[0].result[0].value.choices: "
        "expected a list of strings"
    ) in out.output
    assert store.path.read_bytes() == before


def test_the_labels_commands_load_no_model_libraries() -> None:
    """Moving annotations must not pay for scikit-learn, cleanlab or statsmodels."""
    code = (
        "import sys, json; from spanda_assets.cli import labels;"
        "import spanda_assets.lib.labeling.store;"
        "print(json.dumps([m for m in ('sklearn', 'cleanlab', 'statsmodels', 'dagster')"
        " if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
