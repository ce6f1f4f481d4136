"""The audit log's hash chain: intact verifies; one edited, deleted or reordered line is named."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from kubemind.audit import audit_log, record
from kubemind.audit.actor import current_actor, jwt_subject, kubeconfig_user
from kubemind.cli import main


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KUBEMIND_HOME", str(tmp_path))
    monkeypatch.delenv("KUBEMIND_AUDIT_POSTGRES_DSN", raising=False)
    for version in ("1", "2", "3", "4"):
        record("models.alias", {"kind": "RegisteredModelAlias", "name": "clf@champion"}, model="clf",
               version=version, before=str(int(version) - 1) if version != "1" else None, after=version)
    record("models.register", {"kind": "RegisteredModel", "name": "other"}, model="other", version="1")
    return tmp_path


def lines(home: Path) -> list[str]:
    return (home / "audit" / "audit.jsonl").read_text().splitlines()


def write(home: Path, new: list[str]) -> None:
    (home / "audit" / "audit.jsonl").write_text("\n".join(new) + "\n")


def verify(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["audit", "verify"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_an_untouched_log_verifies_and_shows_who_did_what(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = verify(capsys)
    assert code == 0 and "5 record(s), chain intact" in out
    records = [json.loads(line) for line in lines(home)]
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert all(r["prev"] == p["hash"] for p, r in itertools.pairwise(records))
    assert records[0]["time"].endswith("Z") and records[0]["request_id"]
    assert main(["audit", "show", "--model", "clf"]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert len(shown) == 4 and "models.alias RegisteredModelAlias/clf@champion v2 \"1\" -> \"2\"" in shown[1]


def test_an_edited_record_is_named(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edited = lines(home)
    edited[2] = edited[2].replace('"after":"3"', '"after":"9"')
    write(home, edited)
    code, out = verify(capsys)
    assert code == 1 and "record 3 (line 3): modified" in out


def test_a_deleted_record_is_named(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kept = lines(home)
    del kept[1]
    write(home, kept)
    code, out = verify(capsys)
    assert code == 1 and "expected record 2: record 2 deleted" in out


def test_deleting_the_last_records_is_caught_by_the_head(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(home, lines(home)[:3])
    code, out = verify(capsys)
    assert code == 1 and "record 4..5 deleted" in out


def test_reordered_records_are_named(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    swapped = lines(home)
    swapped[1], swapped[2] = swapped[2], swapped[1]
    write(home, swapped)
    code, out = verify(capsys)
    assert code == 1 and "record 3 (line 2): expected record 2: reordered" in out


def test_a_rewritten_seq_still_breaks_the_chain(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Renumbering and re-hashing one record after deleting another: prev no longer matches."""
    from kubemind.audit.log import canonical, record_hash

    kept = [json.loads(line) for line in lines(home)]
    del kept[1]
    for seq, item in enumerate(kept, 1):
        item["seq"] = seq
        item["hash"] = record_hash(item)
    write(home, [canonical(item) for item in kept])
    code, out = verify(capsys)
    assert code == 1 and "record 2 (line 2): does not follow record 1" in out


def test_the_actor_is_the_kubeconfig_user_else_the_os_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text("current-context: local\ncontexts:\n- name: local\n  context: {cluster: up, user: sre-alice}\n")
    monkeypatch.setenv("KUBECONFIG", str(config))
    assert kubeconfig_user() == "sre-alice"
    assert current_actor()["name"] == "sre-alice" and current_actor()["via"] == "kubeconfig"
    assert current_actor("jwt:bob")["name"] == "bob"
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    assert current_actor()["via"] == "os"
    token = "e30." + "eyJzdWIiOiJjYXJvbCJ9" + ".sig"  # {"sub":"carol"}
    assert jwt_subject(token) == "carol"


def test_the_file_log_is_under_kubemind_home(home: Path) -> None:
    assert audit_log().where == str(home / "audit" / "audit.jsonl")
