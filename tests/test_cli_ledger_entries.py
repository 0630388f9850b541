"""`lingtan certificates …`, `lingtan offsets …` and `lingtan audit list` through
`lingtan.cli.main`, on a tmp SQLite store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.ledgers import LedgerStore
from lingtan.cli import main

CERT: dict[str, Any] = {
    "id": "GEC-1",
    "kind": "gec",
    "mwh": 12.5,
    "valid_from": "2026-01-01T00:00:00+08:00",
    "valid_to": "2026-04-01T00:00:00+08:00",
    "source": "registry",
}
OFFSET: dict[str, Any] = {"id": "CCER-1", "kind": "ccer", "tco2": 3.0, "date": "2026-02-01"}


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("LINGTAN_DB_URL", "LINGTAN_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "data"
    with LedgerStore.for_data_dir(d) as store:
        store.add_certificate("demo", CERT)
        store.add_certificate("other", {**CERT, "id": "GEC-OTHER"})
        store.add_offset("demo", OFFSET)
    return d


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("noun", "entry_id", "amount"), [("certificates", "GEC-1", "12.5"), ("offsets", "CCER-1", "3")]
)
def test_list_revoke_list(
    data_dir: Path, capsys: pytest.CaptureFixture[str], noun: str, entry_id: str, amount: str
) -> None:
    d = str(data_dir)
    code, out, _ = run(capsys, noun, "list", "--park", "demo", "--data-dir", d)
    assert code == 0
    header, line = out.strip().splitlines()
    assert header.split()[:3] == ["ID", "KIND", "MWH" if noun == "certificates" else "TCO2"]
    assert line.split()[0] == entry_id and line.split()[2] == amount
    assert line.endswith("active")

    code, out, err = run(
        capsys,
        noun,
        "revoke",
        entry_id,
        "--park",
        "demo",
        "--reason",
        "issued twice",
        "--data-dir",
        d,
    )
    assert code == 0, err
    rec = json.loads(out)
    assert rec["id"] == entry_id and rec["revoke_reason"] == "issued twice"
    assert rec["revoked_by"].startswith("cli") and rec["revoked_at"]
    assert f"revoked {noun[:-1]} {entry_id} of park demo" in err

    code, out, _ = run(capsys, noun, "list", "--park", "demo", "--data-dir", d)
    assert (code, out.strip()) == (0, f"no {noun} in park demo")
    code, out, _ = run(
        capsys, noun, "list", "--park", "demo", "--include-revoked", "--json", "--data-dir", d
    )
    (item,) = json.loads(out)["items"]
    assert item["id"] == entry_id and item["revoke_reason"] == "issued twice"

    # already revoked, unknown, another park's: exit 1 and nothing written
    with LedgerStore.for_data_dir(data_dir) as store:
        head_before = store.audit_head()
    for argv, message in [
        ((entry_id, "--park", "demo"), "already revoked"),
        (("NOPE", "--park", "demo"), "no "),
        # another park's id: GEC-OTHER is park other's; CCER-1 is demo's, asked of park other
        (
            (
                ("GEC-OTHER", "--park", "demo")
                if noun == "certificates"
                else (entry_id, "--park", "other")
            ),
            "no ",
        ),
    ]:
        code, _, err = run(capsys, noun, "revoke", *argv, "--reason", "r", "--data-dir", d)
        assert code == 1 and message in err, err
    with LedgerStore.for_data_dir(data_dir) as store:
        assert store.audit_head() == head_before


def test_the_balance_inputs_and_the_audit_log_follow(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(data_dir)
    code, _, err = run(
        capsys,
        "certificates",
        "revoke",
        "GEC-1",
        "--park",
        "demo",
        "--reason",
        "dup",
        "--data-dir",
        d,
    )
    assert code == 0, err
    with LedgerStore.for_data_dir(data_dir) as store:
        assert store.certificates_for("demo") == []  # what /balance reads
        assert [o.id for o in store.offsets_for("demo")] == ["CCER-1"]
        assert [c.id for c in store.certificates_for("other")] == ["GEC-OTHER"]
    code, out, _ = run(capsys, "audit", "list", "--park", "demo", "--data-dir", d)
    assert code == 0
    last = out.strip().splitlines()[-1].split("  ")
    assert last[2].startswith("cli") and last[3:] == [
        "certificate.revoke",
        "park/demo/certificate/GEC-1",
        "reason: dup",
    ]
    # the other park's entry is not listed under --park demo
    assert "GEC-OTHER" not in out
    code, out, _ = run(capsys, "audit", "list", "--after-seq", "3", "--json", "--data-dir", d)
    (entry,) = json.loads(out)["items"]
    assert entry["seq"] == 4 and entry["details"]["reason"] == "dup"
    code, out, err = run(capsys, "audit", "verify", "--data-dir", d)
    assert code == 0 and "audit chain intact: 4 entries" in out, out + err


@pytest.mark.parametrize("reason", [None, "", "   ", "x" * 501])
def test_a_reason_is_required(
    data_dir: Path, capsys: pytest.CaptureFixture[str], reason: str | None
) -> None:
    argv = ["offsets", "revoke", "CCER-1", "--park", "demo", "--data-dir", str(data_dir)]
    with pytest.raises(SystemExit) as exc:
        main([*argv, *([] if reason is None else ["--reason", reason])])
    assert exc.value.code == 2
    assert "reason" in capsys.readouterr().err
    with LedgerStore.for_data_dir(data_dir) as store:
        assert [o.id for o in store.offsets_for("demo")] == ["CCER-1"]


def test_no_database_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "nowhere")
    code, _, err = run(capsys, "certificates", "list", "--park", "demo", "--data-dir", missing)
    assert code == 2 and "no ledger database" in err
    code, _, err = run(
        capsys,
        "certificates",
        "revoke",
        "X",
        "--park",
        "demo",
        "--reason",
        "r",
        "--data-dir",
        missing,
    )
    assert code == 2 and not (tmp_path / "nowhere").exists()
