"""API tokens and the `spanda access` commands: a token is shown once and stored only as
its hash; revoked, expired and unknown tokens let nobody in; the audit commands list
and verify the decisions."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from spanda_assets.cli import main
from spanda_assets.lib.access import (
    ANONYMOUS,
    ENV_ACCESS_POLICY_DIR,
    AccessControl,
    TokenStore,
    TokenStoreError,
    Unauthenticated,
)
from spanda_assets.lib.access.tokens import token_hash
from spanda_assets.lib.publish.datasets import load_datasets

DATASET = load_datasets()[0]
PUBLISHER = DATASET.publisher.name


def spanda(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def create(*args: str) -> str:
    code, out, err = spanda("access", "token", "create", *args)
    assert code == 0, err
    return out


def every_byte_under(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def test_create_prints_only_the_token_and_stores_only_its_hash(spanda_home: Path) -> None:
    out = create(
        "--principal", "alice", "--role", "researcher", "--purpose", "research",
        "--dua", DATASET.dua.id,
    )  # fmt: skip
    token = out.strip()
    assert out == token + "\n"  # TOKEN=$(spanda access token create ...) works
    assert token.startswith("spanda_") and len(token) > 40
    access = spanda_home / "access"
    stored = every_byte_under(access)
    assert token.encode() not in stored
    assert token[len("spanda_") :].encode() not in stored
    assert token_hash(token).encode() in stored
    tokens_file = access / "tokens.json"
    assert stat.S_IMODE(tokens_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(access.stat().st_mode) == 0o700

    principal = AccessControl.load().authenticate(f"Bearer {token}")
    assert principal.name == "alice" and principal.role == "researcher"
    assert principal.institution == PUBLISHER  # the default: datasets.yaml's publisher
    assert principal.purposes == {"research"} and principal.duas == {DATASET.dua.id}
    assert principal.token_id and principal.token_id.startswith("tok_")


def test_list_never_shows_a_token_or_its_hash(spanda_home: Path) -> None:
    token = create("--principal", "bob", "--role", "public", "--institution", "Uni X").strip()
    code, out, _ = spanda("access", "token", "list", "--json")
    assert code == 0
    (row,) = json.loads(out)
    assert row["principal"] == "bob" and row["institution"] == "Uni X"
    assert row["state"] == "active" and "sha256" not in row
    code, text, _ = spanda("access", "token", "list")
    for shown in (out, text):
        assert token not in shown and token_hash(token) not in shown
    assert row["token_id"] in text


def test_a_revoked_token_lets_nobody_in_at_once(spanda_home: Path) -> None:
    token = create("--principal", "carol", "--role", "researcher").strip()
    ac = AccessControl.load()
    principal = ac.authenticate(f"Bearer {token}")  # cached from here on
    code, out, _ = spanda("access", "token", "revoke", str(principal.token_id))
    assert code == 0 and "revoked" in out
    with pytest.raises(Unauthenticated, match="revoked") as err:
        ac.authenticate(f"Bearer {token}")
    assert token not in str(err.value)
    code, out, _ = spanda("access", "token", "revoke", str(principal.token_id))
    assert code == 0 and "already revoked" in out
    code, _, err_text = spanda("access", "token", "revoke", "tok_nope")
    assert code == 2 and "tok_nope" in err_text and str(principal.token_id) in err_text


def test_an_expired_token_lets_nobody_in(spanda_home: Path) -> None:
    store = TokenStore(spanda_home / "access")
    token, record = store.create("dave", "researcher", institution="X", expires_days=1)
    ac = AccessControl.load()
    assert ac.authenticate(f"Bearer {token}").name == "dave"
    doc = json.loads(store.path.read_text())
    doc["tokens"][0]["expires_at"] = "2020-01-01T00:00:00Z"
    store.path.write_text(json.dumps(doc))
    with pytest.raises(Unauthenticated, match=f"{record.token_id} expired on 2020-01-01"):
        ac.authenticate(f"Bearer {token}")
    assert store.records()[0].listing()["state"] == "expired"


def test_unknown_tokens_and_wrong_schemes_are_unauthenticated(spanda_home: Path) -> None:
    ac = AccessControl.load()
    assert ac.authenticate(None) is ANONYMOUS
    assert ac.authenticate("  ") is ANONYMOUS
    secret = "spanda_this-is-not-a-token-but-looks-like-one"
    for header in (f"Bearer {secret}", f"Basic {secret}", secret, "Bearer ", f"bearer  {secret}x"):
        with pytest.raises(Unauthenticated) as err:
            ac.authenticate(header)
        assert secret not in str(err.value)


def test_a_token_is_issued_only_with_sound_attributes(spanda_home: Path) -> None:
    store = TokenStore(spanda_home / "access")
    with pytest.raises(TokenStoreError) as err:
        store.create("anonymous", "admin", institution=" ", purposes=("Research!",))
    message = str(err.value)
    for words in ("'anonymous'", "role 'admin'", "institution is empty", "'Research!'"):
        assert words in message
    code, _, _ = spanda("access", "token", "create", "--principal", "x", "--role", "admin")
    assert code == 2
    assert store.records() == []


def test_concurrent_creates_lose_no_token(spanda_home: Path) -> None:
    store = TokenStore(spanda_home / "access")
    issued: list[str] = []

    def issue(i: int) -> None:
        token, _ = TokenStore(store.directory).create(f"user{i}", "researcher", institution="X")
        issued.append(token)

    workers = [threading.Thread(target=issue, args=(i,)) for i in range(12)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(store.records()) == 12
    names = {store.principal_for(t).name for t in issued}
    assert names == {f"user{i}" for i in range(12)}


def test_audit_lists_and_verifies_the_decisions(spanda_home: Path) -> None:
    token = create(
        "--principal", "erin", "--role", "researcher", "--purpose", "research",
        "--dua", DATASET.dua.id,
    ).strip()  # fmt: skip
    ac = AccessControl.load()
    erin = ac.authenticate(f"Bearer {token}")
    ac.authorize(erin, "download", DATASET, version=1, purpose="research", columns=["subject_id"])
    ac.authorize(erin, "download", DATASET, purpose="marketing")
    ac.authorize_namespace(erin, "query", "bronze.students")

    code, out, _ = spanda("access", "audit", "--json")
    assert code == 0
    entries = json.loads(out)
    assert [e["decision"] for e in entries] == ["allow", "deny", "deny"]
    assert entries[0]["columns_denied"] == ["subject_id"]
    assert entries[0]["token_id"] == erin.token_id
    code, out, _ = spanda("access", "audit", "--limit", "1")
    assert code == 0 and "table/bronze.students" in out and "validated_posts" not in out
    assert "why:" in out
    assert token not in every_byte_under(spanda_home / "access").decode()

    code, out, _ = spanda("access", "audit", "--verify")
    assert code == 0 and "intact: 3 entries" in out
    log = spanda_home / "access" / "audit.jsonl"
    text = log.read_text().splitlines(keepends=True)
    log.write_text(text[0].replace('"allow"', '"deny"') + "".join(text[1:]))
    code, out, _ = spanda("access", "audit", "--verify")
    assert code == 1 and "line 1" in out and "altered" in out
    code, out, _ = spanda("access", "audit", "--verify", "--json")
    assert code == 1 and json.loads(out)["line"] == 1


def test_audit_verify_catches_a_cut_end(spanda_home: Path) -> None:
    ac = AccessControl.load()
    for _ in range(3):
        ac.authorize(ANONYMOUS, "read_metadata", DATASET)
    log = spanda_home / "access" / "audit.jsonl"
    log.write_text("".join(log.read_text().splitlines(keepends=True)[:2]))
    code, out, _ = spanda("access", "audit", "--verify")
    assert code == 1 and "line 3" in out and "truncated" in out


def test_policy_command_validates_the_policy(
    spanda_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = spanda("access", "policy", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["policy_set_hash"] == AccessControl.load().policy_set_hash
    assert "forbid-dua-not-signed" in doc["policy_ids"]
    broken = tmp_path / "policy"
    broken.mkdir()
    (broken / "policies.cedar").write_text('@id("x")\npermit (principal, action, resource)\n')
    (broken / "schema.cedarschema").write_text("entity User;")
    monkeypatch.setenv(ENV_ACCESS_POLICY_DIR, str(broken))
    code, _, err = spanda("access", "policy")
    assert code == 2 and str(broken / "policies.cedar") in err
