"""The audit log: the hash chain and its head anchor catch edits, removals, reordering
and a cut end; concurrent writers (threads and processes) never fork the chain."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from spanda_assets.lib.access import AuditLog, AuditLogError
from spanda_assets.lib.access.audit import GENESIS, canonical, entry_hash


def record(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "principal": "alice",
        "role": "researcher",
        "action": "download",
        "resource": f"dataset/validated_posts/v{i}",
        "decision": "allow",
        "snapshot_id": 2**62 + i,
        "reasons": [],
        **extra,
    }


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    audit = AuditLog(tmp_path / "access")
    for i in range(1, 6):
        audit.append(record(i))
    return audit


def lines(log: AuditLog) -> list[str]:
    return log.path.read_text().splitlines(keepends=True)


def test_the_chain_verifies(log: AuditLog) -> None:
    result = log.verify()
    assert result.ok and result.entries == 5 and result.head_seq == 5
    entries = log.entries()
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0]["prev"] == GENESIS
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(entries))
    assert all(entry_hash(e) == e["hash"] for e in entries)
    assert result.head_hash == entries[-1]["hash"]
    assert json.loads(log.head_path.read_text()) == {"seq": 5, "hash": entries[-1]["hash"]}
    assert log.entries(limit=2) == entries[-2:]


def test_the_files_are_private(log: AuditLog) -> None:
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.head_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.directory.stat().st_mode) == 0o700


def test_an_edited_field_is_found_on_its_line(log: AuditLog) -> None:
    text = lines(log)
    entry = json.loads(text[2])
    entry["decision"] = "deny"
    text[2] = canonical(entry).decode() + "\n"
    log.path.write_text("".join(text))
    result = log.verify()
    assert not result.ok and result.line == 3
    assert "altered" in (result.problem or "")
    assert result.entries == 2 and result.head_seq == 2


def test_an_edit_with_its_hash_recomputed_breaks_the_next_line(log: AuditLog) -> None:
    text = lines(log)
    entry = json.loads(text[2])
    entry["principal"] = "mallory"
    entry["hash"] = entry_hash(entry)
    text[2] = canonical(entry).decode() + "\n"
    log.path.write_text("".join(text))
    result = log.verify()
    assert not result.ok and result.line == 4
    assert "line 3 was rewritten" in (result.problem or "")


def test_a_removed_middle_line_is_found(log: AuditLog) -> None:
    text = lines(log)
    del text[2]
    log.path.write_text("".join(text))
    result = log.verify()
    assert not result.ok and result.line == 3
    assert "removed" in (result.problem or "")


def test_reordered_lines_are_found(log: AuditLog) -> None:
    text = lines(log)
    text[1], text[2] = text[2], text[1]
    log.path.write_text("".join(text))
    result = log.verify()
    assert not result.ok and result.line == 2
    assert "reordered" in (result.problem or "")


def test_a_truncated_tail_is_found_by_the_anchor(log: AuditLog) -> None:
    log.path.write_text("".join(lines(log)[:-1]))
    result = log.verify()  # the chain itself is fine: only the anchor knows
    assert not result.ok and result.line == 5
    assert "truncated tail" in (result.problem or "")
    # and the log takes no more lines: appending would re-anchor and hide the cut
    with pytest.raises(AuditLogError, match="removed from its end"):
        log.append(record(6))
    log.path.write_text("")
    assert not log.verify().ok


def test_a_replaced_last_line_is_found_by_the_anchor(log: AuditLog) -> None:
    text = lines(log)
    entry = json.loads(text[-1])
    entry["decision"] = "deny"
    entry["hash"] = entry_hash(entry)
    text[-1] = canonical(entry).decode() + "\n"
    log.path.write_text("".join(text))
    result = log.verify()
    assert not result.ok and result.line == 5
    assert "head anchor" in (result.problem or "")


def test_a_missing_anchor_is_reported(log: AuditLog) -> None:
    log.head_path.unlink()
    result = log.verify()
    assert not result.ok and "anchor" in (result.problem or "")


def test_a_torn_last_line_stops_appends(log: AuditLog) -> None:
    with log.path.open("ab") as f:
        f.write(b'{"seq": 6, "time"')
    with pytest.raises(AuditLogError, match="incomplete"):
        log.append(record(6))
    result = log.verify()
    assert not result.ok and result.line == 6 and "incomplete" in (result.problem or "")


def test_an_append_interrupted_before_its_anchor_is_noted_not_failed(log: AuditLog) -> None:
    anchor = log.head_path.read_bytes()
    log.append(record(6))
    log.head_path.write_bytes(anchor)  # as if the process died before the anchor write
    result = log.verify()
    assert result.ok and result.entries == 6 and result.note
    log.append(record(7))  # the next append re-anchors
    assert log.verify() == log.verify() and log.verify().note is None
    log.head_path.write_bytes(anchor)
    assert not log.verify().ok  # two lines past the anchor is not a crash


def test_a_record_cannot_forge_the_chain_fields(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="prev"):
        AuditLog(tmp_path).append({"prev": GENESIS})


def _append_many(directory: str, writer: int, count: int) -> None:
    audit = AuditLog(Path(directory))
    for i in range(count):
        audit.append(record(i, writer=writer))


def test_concurrent_processes_and_threads_keep_one_chain(tmp_path: Path) -> None:
    directory = tmp_path / "access"
    processes, threads, count = 4, 3, 40
    ctx = multiprocessing.get_context("spawn")  # no lock or handle inherited by fork
    procs = [
        ctx.Process(target=_append_many, args=(str(directory), w, count)) for w in range(processes)
    ]
    workers = [
        threading.Thread(target=_append_many, args=(str(directory), processes + w, count))
        for w in range(threads)
    ]
    for p in procs:
        p.start()
    for t in workers:
        t.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    for t in workers:
        t.join(timeout=120)
    log = AuditLog(directory)
    result = log.verify()
    total = (processes + threads) * count
    assert result.ok, result.problem
    assert result.entries == total
    entries = log.entries()
    assert [e["seq"] for e in entries] == list(range(1, total + 1))
    seen = {(e["writer"], e["resource"]) for e in entries}
    assert len(seen) == total  # every append is there, once


def _rechain(entries: list[dict[str, Any]]) -> str:
    """The entries with every hash recomputed in order: a forger's best effort."""
    prev, out = GENESIS, []
    for original in entries:
        entry = {**original, "prev": prev}
        entry["hash"] = entry_hash({k: v for k, v in entry.items() if k != "hash"})
        prev = entry["hash"]
        out.append(canonical(entry).decode() + "\n")
    return "".join(out)


def test_a_rewritten_history_cannot_be_re_anchored_by_the_next_decision(log: AuditLog) -> None:
    """Flip a decision, recompute every hash after it, add a line, leave the anchor: the
    next real decision must not re-anchor the forgery, and --verify keeps failing."""
    entries = log.entries()
    entries[1]["decision"] = "deny"
    forged = {**record(6), "seq": 6, "time": entries[-1]["time"]}
    log.path.write_text(_rechain([*entries, forged]))
    assert not log.verify().ok
    with pytest.raises(AuditLogError, match="head anchor"):
        log.append(record(7))
    assert not log.verify().ok


def test_a_missing_anchor_beside_a_log_stops_decisions(log: AuditLog) -> None:
    keep = lines(log)[:2]
    log.path.write_text("".join(keep))
    log.head_path.unlink()
    with pytest.raises(AuditLogError, match="no head anchor"):
        log.append(record(9))
    assert not log.verify().ok


def test_a_duplicated_key_or_reformatted_line_is_an_edit(log: AuditLog) -> None:
    text = lines(log)
    text[1] = text[1].replace('"decision":"allow"', '"decision":"deny","decision":"allow"', 1)
    log.path.write_text("".join(text))
    result = log.verify()
    assert not result.ok and result.line == 2 and "form it was written in" in (result.problem or "")


def test_an_append_cut_before_its_anchor_is_continued(log: AuditLog) -> None:
    """The line was written and fsynced, the anchor write was not: the next append goes on
    from that line (it follows the anchored one), and the chain verifies."""
    anchor = log.head_path.read_bytes()
    log.append(record(6))
    log.head_path.write_bytes(anchor)  # as if the process died before replacing it
    log.append(record(7))
    assert log.verify().ok and log.verify().entries == 7
