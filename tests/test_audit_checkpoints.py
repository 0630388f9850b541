"""Signed checkpoints of the audit head, outside the database: written by `lingtan audit
checkpoint` and by the API, verified by `lingtan audit verify` without a hand-typed anchor;
a chain rewritten from any seq fails against them."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import create_engine

from app.config import Settings
from app.ledgers import LedgerStore
from app.ledgers.checkpoints import (
    Checkpoint,
    CheckpointFile,
    SigningKey,
    key_id_of,
    verify_signature,
)
from app.live.state import LiveState
from app.main import create_app
from app.storage.embedded import EmbeddedStorage
from lingtan.cli import main
from tests.api_support import registry


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in (
        "LINGTAN_DB_URL",
        "LINGTAN_DATA_DIR",
        "LINGTAN_AUDIT_SIGNING_KEY",
        "LINGTAN_AUDIT_CHECKPOINTS",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "data"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def populate(data_dir: Path, n: int, start: int = 0) -> None:
    with LedgerStore.for_data_dir(data_dir) as store:
        for k in range(start, start + n):
            store.record_audit("tester", "test.change", f"thing/{k}", {"k": k})


def rewrite_from(data_dir: Path, seq: int) -> None:
    """An attacker with database access: delete entries from `seq` on and append a
    self-consistent replacement chain (the triggers dropped first)."""
    con = create_engine(f"sqlite:///{data_dir / 'lingtan.db'}")
    with con.begin() as c:
        c.exec_driver_sql("DROP TRIGGER audit_log_no_delete")
        c.exec_driver_sql(f"DELETE FROM audit_log WHERE seq >= {seq}")
    con.dispose()
    with LedgerStore.for_data_dir(data_dir) as store:
        for k in range(seq, 6):
            store.record_audit("tester", "test.change", f"thing/{k - 1}", {"k": -k})
        assert store.verify_audit() == []  # self-consistent: only the checkpoint can tell


def test_checkpoint_signs_the_head_with_a_key_outside_the_database(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(data_dir)
    populate(data_dir, 5)
    code, out, err = run(capsys, "audit", "checkpoint", "--data-dir", d)
    assert code == 0 and "seq 5" in err
    line = json.loads(out)
    key_file = data_dir / "audit-signing.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # the file holds exactly the printed checkpoint
    lines = (data_dir / "audit-checkpoints.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [line]

    # checked independently of the product code: the documented signed bytes, the key file
    private = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert isinstance(private, Ed25519PrivateKey)
    public = private.public_key()
    raw_pub = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert line["key_id"] == hashlib.sha256(raw_pub).hexdigest()[:16]
    with LedgerStore.for_data_dir(data_dir) as store:
        assert (line["seq"], line["hash"]) == store.audit_head()
    message = (
        b"lingtan audit checkpoint v1\n"
        + json.dumps(
            {"hash": line["hash"], "key_id": line["key_id"], "seq": 5, "time": line["time"]},
            separators=(",", ":"),
        ).encode()
    )
    public.verify(base64.b64decode(line["signature"]), message)  # raises if not

    code, out, err = run(capsys, "audit", "verify", "--data-dir", d)
    assert code == 0
    assert out.startswith("audit chain intact: 5 entries, head 5 ")
    assert f"latest signed checkpoint seq 5 ({line['time']}, key {line['key_id']}) matches" in out


@pytest.mark.parametrize("from_seq", [1, 2, 3, 4, 5])
def test_a_chain_rewritten_from_any_seq_fails_against_the_checkpoint(
    data_dir: Path, capsys: pytest.CaptureFixture[str], from_seq: int
) -> None:
    d = str(data_dir)
    populate(data_dir, 5)
    assert run(capsys, "audit", "checkpoint", "--data-dir", d)[0] == 0
    rewrite_from(data_dir, from_seq)
    code, out, _ = run(capsys, "audit", "verify", "--data-dir", d)
    assert code == 1
    assert out.splitlines() == [
        "seq 5: head_mismatch: seq 5 no longer has the hash recorded earlier"
    ]


def test_a_truncated_chain_fails_against_the_checkpoint(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(data_dir)
    populate(data_dir, 3)
    run(capsys, "audit", "checkpoint", "--data-dir", d)
    populate(data_dir, 2, start=3)
    run(capsys, "audit", "checkpoint", "--data-dir", d)
    con = create_engine(f"sqlite:///{data_dir / 'lingtan.db'}")
    with con.begin() as c:
        c.exec_driver_sql("DROP TRIGGER audit_log_no_delete")
        c.exec_driver_sql("DELETE FROM audit_log WHERE seq >= 4")
    con.dispose()
    code, out, _ = run(capsys, "audit", "verify", "--data-dir", d)
    assert code == 1
    assert "seq 5: head_mismatch: log ends at seq 3" in out


def test_a_forged_or_edited_checkpoint_is_refused(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(data_dir)
    populate(data_dir, 5)
    run(capsys, "audit", "checkpoint", "--data-dir", d)
    rewrite_from(data_dir, 3)
    with LedgerStore.for_data_dir(data_dir) as store:
        seq, digest = store.audit_head()
    cp_file = data_dir / "audit-checkpoints.jsonl"
    # the attacker signs the rewritten head with a key of their own ...
    forged = SigningKey(Ed25519PrivateKey.generate()).sign(seq, digest, _now())
    with cp_file.open("a") as fh:
        fh.write(json.dumps(forged.to_json()) + "\n")
    code, out, _ = run(capsys, "audit", "verify", "--data-dir", d)
    assert code == 1
    assert "seq 5: checkpoint_invalid: checkpoint of seq 5" in out
    assert "seq 5: head_mismatch" in out  # the genuine checkpoint still catches the rewrite

    # ... or edits the genuine line to the new hash: its signature no longer holds
    genuine = json.loads(cp_file.read_text().splitlines()[0])
    cp_file.write_text(json.dumps({**genuine, "hash": digest}) + "\n")
    code, out, _ = run(capsys, "audit", "verify", "--data-dir", d)
    assert code == 1
    assert out.splitlines() == [
        f"seq 5: checkpoint_invalid: checkpoint of seq 5 ({genuine['time']}) is not signed by "
        f"the audit key {genuine['key_id']} (key id {genuine['key_id']}): forged or edited"
    ]


def test_an_auditor_verifies_with_the_public_key_only(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(data_dir)
    populate(data_dir, 4)
    run(capsys, "audit", "checkpoint", "--data-dir", d)
    key = SigningKey.load(data_dir / "audit-signing.key")
    pub = tmp_path / "audit.pub"
    pub.write_bytes(
        key.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (data_dir / "audit-signing.key").unlink()
    code, _, err = run(capsys, "audit", "verify", "--data-dir", d)
    assert code == 2 and "no key at" in err
    code, out, _ = run(capsys, "audit", "verify", "--data-dir", d, "--public-key", str(pub))
    assert code == 0 and "latest signed checkpoint seq 4" in out
    # a public key that did not sign them
    other = Ed25519PrivateKey.generate().public_key()
    pub.write_bytes(
        other.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    code, out, _ = run(capsys, "audit", "verify", "--data-dir", d, "--public-key", str(pub))
    assert code == 1 and "checkpoint_invalid" in out


def test_verify_without_checkpoints_says_so(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    populate(data_dir, 2)
    code, out, err = run(capsys, "audit", "verify", "--data-dir", str(data_dir))
    assert code == 0 and out.startswith("audit chain intact: 2 entries")
    assert "no signed checkpoint" in err


def test_signature_check_rejects_any_changed_field() -> None:
    key = SigningKey(Ed25519PrivateKey.generate())
    cp = key.sign(7, "ab" * 32, _now())
    assert verify_signature(cp, key.public)
    for change in (
        {"seq": 8},
        {"hash": "cd" * 32},
        {"time": "2030-01-01T00:00:00.000000Z"},
        {"key_id": "0" * 16},
    ):
        edited = Checkpoint(**{**cp.to_json(), **change})
        assert not verify_signature(edited, key.public), change
    other: Ed25519PublicKey = Ed25519PrivateKey.generate().public_key()
    assert key_id_of(other) != cp.key_id
    assert not verify_signature(cp, other)


def test_two_processes_creating_the_key_share_one(tmp_path: Path) -> None:
    """O_EXCL creation: the loser of the race loads the winner's key."""
    path = tmp_path / "k" / "audit-signing.key"
    code = (
        "import sys; from pathlib import Path; from app.ledgers.checkpoints import SigningKey;"
        "print(SigningKey.load_or_create(Path(sys.argv[1])).key_id)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(path)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        for _ in range(3)
    ]
    ids = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(ids) == 1 and ids == {SigningKey.load(path).key_id}


def _now() -> datetime:
    return datetime.now(UTC)


async def test_the_api_signs_the_head_periodically_and_serves_it(tmp_path: Path) -> None:
    """The API's lifespan writes a checkpoint when the head moved; the endpoints serve the
    file and the public key."""
    reg = registry()
    ledgers = LedgerStore(f"sqlite:///{tmp_path}/l.db")
    auditor = ledgers.create_key("auditor", "evaluator").key
    storage = EmbeddedStorage(tmp_path / "store.sqlite")
    app = create_app(
        Settings(data_dir=tmp_path, audit_checkpoint_s=0.05),
        registry=reg,
        storage=storage,
        ledgers=ledgers,
        live=LiveState(reg),
        refresh_today_in_background=False,
    )
    headers = {"Authorization": f"Bearer {auditor}"}
    transport = httpx.ASGITransport(app=app)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as client,
        ):
            cp_file = tmp_path / "audit-checkpoints.jsonl"
            for _ in range(100):
                if cp_file.exists():
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)  # several rounds: the head did not move, no new line
            assert len(cp_file.read_text().splitlines()) == 1
            ledgers.create_key("viewer", "moved the head")
            for _ in range(100):
                if len(cp_file.read_text().splitlines()) == 2:
                    break
                await asyncio.sleep(0.05)
            assert len(cp_file.read_text().splitlines()) == 2

            r = await client.get("/api/v1/audit/checkpoint/latest", headers=headers)
            assert r.status_code == 200
            doc = r.json()
            assert (doc["checkpoint"]["seq"], doc["checkpoint"]["hash"]) == ledgers.audit_head()
            public = serialization.load_pem_public_key(doc["public_key"].encode())
            assert isinstance(public, Ed25519PublicKey)
            assert verify_signature(Checkpoint.from_json(doc["checkpoint"]), public)
            r = await client.get("/api/v1/audit/checkpoints", headers=headers)
            assert [c["seq"] for c in r.json()["items"]] == [1, 2]
            assert r.json()["key_id"] == doc["key_id"] == doc["checkpoint"]["key_id"]
            r = await client.get("/api/v1/audit", params={"verify": "true"}, headers=headers)
            assert r.json()["problems"] == []
    finally:
        await storage.close()
        ledgers.close()


def test_tail_reads_the_last_lines_across_blocks(tmp_path: Path) -> None:
    key = SigningKey(Ed25519PrivateKey.generate())
    cps = [key.sign(seq, f"{seq:064x}", _now()) for seq in range(1, 2001)]
    path = tmp_path / "cp.jsonl"
    path.write_text(
        "".join(json.dumps(c.to_json()) + "\n" for c in cps[:1000])
        + "not a checkpoint\n"
        + "".join(json.dumps(c.to_json()) + "\n" for c in cps[1000:])
    )
    assert path.stat().st_size > 4 * 64 * 1024  # several blocks
    f = CheckpointFile(path)
    assert f.latest() == cps[-1]
    assert f.tail(700) == cps[-700:]
    assert f.tail(1500) == cps[-1500:]  # across the unreadable line
    assert f.tail(5000) == cps
    assert f.read() == (cps, [1001])
    assert CheckpointFile(tmp_path / "none").tail(3) == []
