"""The collector's start-up read of the stored registry (stdlib sqlite3) agrees with the ledger
store, and hands over to it whenever the store has something to decide."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from app.config import Settings
from app.ledgers import LedgerStore
from app.ledgers.documents import REGISTRY_DOC_NAME, REGISTRY_KIND
from app.ledgers.engine import MIGRATIONS
from app.ledgers.registry_store import RegistryStore
from app.registry import parse_registry, stored
from app.registry.stored import read_in_force, sqlite_path, version_in_force
from collectors.registry_source import own_registry

PARKS = """
parks:
  - id: a
    devices:
      - {id: grid, role: grid}
      - {id: pv, role: pv, max_kw: 100}
"""


def test_its_schema_constants_are_the_ledger_store_s() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_heads() == [stored.LEDGER_SCHEMA_HEAD]
    assert (stored.REGISTRY_KIND, stored.REGISTRY_DOC_NAME) == (REGISTRY_KIND, REGISTRY_DOC_NAME)


def test_only_plain_sqlite_file_urls_are_read_directly(tmp_path: Path) -> None:
    assert sqlite_path(f"sqlite:///{tmp_path}/l.db") == tmp_path / "l.db"
    assert sqlite_path("sqlite:///rel/l.db") == Path("rel/l.db")
    for url in ("sqlite://", "sqlite:///:memory:", "sqlite:///x.db?mode=ro", "postgresql://h/d"):
        assert sqlite_path(url) is None
    assert sqlite_path("sqlite+pysqlite:///x.db") is None


def test_it_reads_what_the_store_starts_on_and_defers_to_it_otherwise(tmp_path: Path) -> None:
    path, url = tmp_path / "parks.yaml", f"sqlite:///{tmp_path / 'ledger.db'}"
    path.write_text(PARKS)
    assert read_in_force(url, path) is None  # no database yet: the store creates it
    with LedgerStore(url) as ledgers:
        store = RegistryStore(ledgers, path)
        start = store.startup()
        got = read_in_force(url, path)
        assert got is not None
        assert (got.registry, got.version, got.file_sha256) == (
            start.registry,
            start.version,
            start.file_sha256,
        )
        # an API edit is newer than the file: it is what a restart runs on
        edited = parse_registry(PARKS.replace("max_kw: 100", "max_kw: 7"))
        store.save(edited, start.registry, "key-x", expected_version=1)
        got = read_in_force(url, path)
        assert got is not None and (got.registry, got.version) == (edited, 2)
        assert version_in_force(url, path) == 2  # what the collector polls, without parsing
        # a missing file: the stored version carries on alone, as the store does
        assert read_in_force(url, tmp_path / "gone.yaml") == got
        assert version_in_force(url, tmp_path / "gone.yaml") == 2
        # an edited file must be imported (a write, audited): the store decides
        path.write_text(PARKS.replace("max_kw: 100", "max_kw: 8"))
        assert read_in_force(url, path) is None
        assert version_in_force(url, path) is None
        assert store.startup().version == 3
        assert read_in_force(url, path) is not None
        assert version_in_force(url, path) == 3


def test_another_schema_revision_is_left_to_the_store(tmp_path: Path) -> None:
    path, db = tmp_path / "parks.yaml", tmp_path / "ledger.db"
    path.write_text(PARKS)
    with LedgerStore(f"sqlite:///{db}") as ledgers:
        RegistryStore(ledgers, path).startup()
        with ledgers._write() as session:
            session.connection().exec_driver_sql("UPDATE alembic_version SET version_num='0001'")
    assert read_in_force(f"sqlite:///{db}", path) is None
    assert version_in_force(f"sqlite:///{db}", path) is None


async def test_the_collector_watch_opens_the_store_later_and_follows_edits(
    tmp_path: Path,
) -> None:
    path, url = tmp_path / "parks.yaml", f"sqlite:///{tmp_path / 'ledger.db'}"
    path.write_text(PARKS)
    settings = Settings(parks=path, data_dir=tmp_path, db_url=url, registry_poll_s=0.05)
    with LedgerStore(url) as other:
        RegistryStore(other, path).startup()
        holder, watch = own_registry(settings)
        assert watch is not None and watch._ledgers is None  # read without the store
        assert holder.version == 1
        task = asyncio.create_task(watch.run())
        try:
            await asyncio.sleep(0.3)  # six polls: nothing changed, SQLAlchemy stays unloaded
            assert watch._ledgers is None
            edited = parse_registry(PARKS.replace("max_kw: 100", "max_kw: 7"))
            RegistryStore(other, path).save(edited, holder.registry, "key-x", expected_version=1)
            for _ in range(250):
                if holder.version == 2:
                    break
                await asyncio.sleep(0.02)
            assert holder.version == 2 and holder.registry == edited
            assert watch._ledgers is not None
        finally:
            task.cancel()
            watch.close()
        assert watch._ledgers is None
