"""`lingtan keys …` and `lingtan audit …` through `lingtan.cli.main`, on a tmp SQLite store."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from app.ledgers import LedgerStore
from lingtan.cli import main


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # nothing from the developer's environment or a stray .env/lingtan.toml may leak in
    for var in ("LINGTAN_DB_URL", "LINGTAN_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "data"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_keys_create_list_revoke(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(data_dir)
    code, out, err = run(
        capsys, "keys", "create", "--role", "viewer", "--label", "grafana", "--data-dir", d
    )
    assert code == 0
    key = out.strip()
    assert key.startswith("lt_k") and "\n" not in key
    key_id = key.split("_")[1]
    assert key_id in err and "only this once" in err

    with LedgerStore.for_data_dir(data_dir) as store:
        info = store.authenticate(key)
        assert info is not None and info.id == key_id and info.role.value == "viewer"

    code, out, _ = run(capsys, "keys", "create", "--role", "admin", "--data-dir", d)
    assert code == 0
    admin_id = out.strip().split("_")[1]

    code, out, _ = run(capsys, "keys", "list", "--data-dir", d)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ID", "ROLE", "STATUS"]
    assert len(lines) == 3
    assert key not in out  # never the secret
    viewer_line = next(line for line in lines if line.startswith(key_id))
    assert viewer_line.split()[1:3] == ["viewer", "active"] and viewer_line.endswith("grafana")

    code, out, _ = run(capsys, "keys", "revoke", key_id, "--data-dir", d)
    assert code == 0 and key_id in out
    with LedgerStore.for_data_dir(data_dir) as store:
        assert store.authenticate(key) is None
        actors = [e.actor for e in store.list_audit()]
    assert len(actors) == 3 and all(a.startswith("cli") for a in actors)

    code, out, _ = run(capsys, "keys", "list", "--json", "--data-dir", d)
    items = {i["id"]: i for i in json.loads(out)["items"]}
    assert items[key_id]["revoked_at"] is not None and items[admin_id]["revoked_at"] is None
    code, out, _ = run(capsys, "keys", "list", "--active", "--data-dir", d)
    assert key_id not in out and admin_id in out

    # errors: already revoked, unknown id, the last admin (lock-out)
    assert run(capsys, "keys", "revoke", key_id, "--data-dir", d)[0] == 1
    code, _, err = run(capsys, "keys", "revoke", "k000000000000", "--data-dir", d)
    assert code == 1 and "no API key" in err
    code, _, err = run(capsys, "keys", "revoke", admin_id, "--data-dir", d)
    assert code == 1 and "last active admin" in err


def test_store_from_environment_and_db_url(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LINGTAN_DATA_DIR", str(data_dir))
    assert run(capsys, "keys", "create", "--role", "auditor")[0] == 0
    assert (data_dir / "lingtan.db").exists()
    other = data_dir.parent / "other.db"
    code, _, _ = run(capsys, "keys", "create", "--role", "viewer", "--db-url", f"sqlite:///{other}")
    assert code == 0 and other.exists()
    code, out, _ = run(capsys, "keys", "list")
    assert code == 0 and "auditor" in out and "viewer" not in out


def test_read_commands_do_not_invent_a_store(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["keys", "list"], ["audit", "verify"], ["audit", "head"]):
        code, _, err = run(capsys, *argv, "--data-dir", str(data_dir))
        assert code == 2 and "no ledger database" in err
    assert not data_dir.exists()


def _populate(data_dir: Path, n: int) -> None:
    with LedgerStore.for_data_dir(data_dir) as store:
        for k in range(n):
            store.record_audit("tester", "test.change", f"thing/{k}", {"k": k})


def _tamper(data_dir: Path, sql: str) -> None:
    # an attacker with write access to the database file: drop the append-only guards first
    con = sqlite3.connect(data_dir / "lingtan.db")
    try:
        con.execute("DROP TRIGGER audit_log_no_update")
        con.execute("DROP TRIGGER audit_log_no_delete")
        con.execute(sql)
        con.commit()
    finally:
        con.close()


def test_audit_verify_intact_then_edited(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(data_dir)
    _populate(data_dir, 5)
    code, head, _ = run(capsys, "audit", "head", "--data-dir", d)
    assert code == 0
    seq, _, digest = head.strip().partition(":")
    assert seq == "5" and len(digest) == 64

    code, out, _ = run(capsys, "audit", "verify", "--data-dir", d)
    assert code == 0
    assert out.strip() == f"audit chain intact: 5 entries, head 5 {digest}"
    code, out, _ = run(capsys, "audit", "verify", "--anchor", f"5:{digest}", "--data-dir", d)
    assert code == 0 and "anchor seq 5 matches" in out

    _tamper(data_dir, """UPDATE audit_log SET details = '{"k":99}' WHERE seq = 3""")
    code, out, err = run(capsys, "audit", "verify", "--data-dir", d)
    assert code == 1
    assert out.splitlines() == [
        "seq 3: edited: seq 3 was edited: its content no longer matches its hash"
    ]
    assert "NOT intact: 1 problem" in err


def test_audit_verify_deleted_middle_and_tail(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(data_dir)
    _populate(data_dir, 6)
    head = run(capsys, "audit", "head", "--data-dir", d)[1].strip()

    _tamper(data_dir, "DELETE FROM audit_log WHERE seq = 4")
    code, out, _ = run(capsys, "audit", "verify", "--data-dir", d)
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("seq 4: missing: ")
    assert "seq 4 missing before seq 5" in lines[0]

    # deleting the last entries leaves a self-consistent chain; only an anchor catches it
    # (opening the store re-installed the triggers, so they are dropped again)
    _tamper(data_dir, "DELETE FROM audit_log WHERE seq = 6")
    code, out, _ = run(capsys, "audit", "verify", "--anchor", head, "--data-dir", d)
    assert code == 1
    kinds = [line.split(":")[1].strip() for line in out.splitlines()]
    assert kinds == ["missing", "head_mismatch"]
    assert out.splitlines()[1].startswith("seq 6: head_mismatch")


def test_bad_anchor_and_bare_groups(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["audit", "verify", "--anchor", "5:nothex", "--data-dir", str(data_dir)])
    assert exc.value.code == 2
    assert "SEQ:HASH" in capsys.readouterr().err
    assert main(["keys"]) == 2
    assert main(["audit"]) == 2
    with pytest.raises(SystemExit):
        main(["keys", "create", "--role", "root"])
