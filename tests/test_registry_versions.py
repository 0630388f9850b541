"""Registry edits below the API: the diff, the in-process holder, and the versions kept in the
ledger store (file imports, API edits, polling, races), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.ledgers import LedgerStore, VersionConflictError
from app.ledgers.registry_store import (
    FILE_ACTOR,
    RegistryStore,
    open_registry,
)
from app.registry import RegistryError, parse_registry
from app.registry.diff import diff_registries
from app.registry.holder import RegistryChange, RegistryHolder
from app.registry.models import Registry

BASE = """
parks:
  - id: a
    timezone: Asia/Shanghai
    devices:
      - {id: grid, role: grid}
      - {id: pv, role: pv, max_kw: 100}
      - {id: bldg, role: load, included_in: grid}
  - id: b
    devices:
      - {id: grid, role: grid}
"""


def pv_max_kw(kw: int) -> Registry:
    """BASE with park a's PV bound set to `kw`."""
    return parse_registry(BASE.replace("max_kw: 100", f"max_kw: {kw}"))


# --- diff ----------------------------------------------------------------------------------


def test_diff_names_each_added_removed_and_changed_item() -> None:
    old = parse_registry(BASE)
    new = parse_registry(
        BASE.replace("{id: pv, role: pv, max_kw: 100}", "{id: pv, role: pv, max_kw: 150}")
        .replace("      - {id: bldg, role: load, included_in: grid}\n", "")
        .replace("  - id: b\n", "  - id: c\n")
        + "      - {id: wind, role: wind}\n"
    )
    d = diff_registries(old, new)
    assert d.parks_added == ("c",)
    assert d.parks_removed == ("b",)
    assert d.parks_changed == ("a",)
    assert d.devices_changed == ("a/pv",)
    assert d.devices_removed == ("a/bldg",)
    assert d.devices_added == ()  # wind went into park c, which is new as a whole
    assert d.realigned == ()
    assert d.touched_parks() == {"a", "b", "c"}
    # state to drop: the edited and removed devices, and every device of the removed park
    assert d.stale_devices(old) == {("a", "pv"), ("a", "bldg"), ("b", "grid")}
    assert bool(d)


def test_diff_of_equal_registries_is_empty_and_alignment_change_is_flagged() -> None:
    assert not diff_registries(parse_registry(BASE), parse_registry(BASE))
    assert diff_registries(parse_registry(BASE), parse_registry(BASE)).summary() == {}
    moved = parse_registry(BASE.replace("Asia/Shanghai", "Europe/Berlin"))
    d = diff_registries(parse_registry(BASE), moved)
    assert d.parks_changed == ("a",) and d.realigned == ("a",)
    assert d.devices_changed == ()
    # a re-cut park's devices all restart from stored history
    assert d.stale_devices(parse_registry(BASE)) == {("a", "grid"), ("a", "pv"), ("a", "bldg")}


def test_diff_summary_cuts_long_lists_and_says_how_many() -> None:
    many = "\n".join(f"      - {{id: m{i}, role: load, included_in: grid}}" for i in range(5))
    new = parse_registry(BASE.replace("      - {id: bldg,", many + "\n      - {id: bldg,"))
    summary = diff_registries(parse_registry(BASE), new).summary(limit=3)
    assert summary == {
        "parks_changed": ["a"],
        "devices_added": ["a/m0", "a/m1", "a/m2"],
        "devices_added_total": 5,
    }


# --- holder --------------------------------------------------------------------------------


def test_holder_switches_tells_listeners_in_order_and_never_rolls_back() -> None:
    holder = RegistryHolder(parse_registry(BASE), version=3)
    seen: list[tuple[str, int]] = []

    def broken(_: RegistryChange) -> None:
        raise RuntimeError("listener bug")

    holder.subscribe(lambda c: seen.append(("first", c.version)))
    holder.subscribe(broken)
    holder.subscribe(lambda c: seen.append(("last", c.version)))
    new = parse_registry(BASE.replace("max_kw: 100", "max_kw: 120"))
    change = holder.replace(new, 4)
    assert change is not None and change.diff.devices_changed == ("a/pv",)
    assert holder.registry is new and holder.version == 4
    # a failing listener does not keep the later ones on the old registry
    assert seen == [("first", 4), ("last", 4)]
    # an older version (a slow poll) is ignored
    assert holder.replace(parse_registry(BASE), 2) is None
    assert holder.registry is new
    # the same content again: switched, but nobody needs telling
    assert holder.replace(parse_registry(BASE.replace("max_kw: 100", "max_kw: 120")), 5)
    assert seen == [("first", 4), ("last", 4)]


# --- stored versions -----------------------------------------------------------------------


@pytest.fixture
def ledgers(sql_url: str) -> Iterator[LedgerStore]:
    s = LedgerStore(sql_url)
    yield s
    s.close()


def registry_audit(ledgers: LedgerStore) -> list[dict[str, object]]:
    return [
        {"actor": e.actor, "version": e.details["version"], "changes": e.details["changes"]}
        for e in ledgers.list_audit()
        if e.action == "registry.put"
    ]


def test_file_is_imported_once_and_again_only_when_it_changes(
    ledgers: LedgerStore, tmp_path: Path
) -> None:
    path = tmp_path / "parks.yaml"
    path.write_text(BASE)
    store = RegistryStore(ledgers, path)
    first = store.startup()
    assert (first.version, first.updated_by, first.source) == (1, FILE_ACTOR, "file")
    assert first.registry == parse_registry(BASE)
    assert store.startup().version == 1  # restart, same file: nothing new
    path.write_text(BASE.replace("max_kw: 100", "max_kw: 200"))
    second = store.startup()
    assert second.version == 2 and second.registry.device("a", "pv").max_kw == 200  # type: ignore[union-attr]
    assert registry_audit(ledgers) == [
        {"actor": FILE_ACTOR, "version": 1, "changes": {"parks_added": ["a", "b"]}},
        {
            "actor": FILE_ACTOR,
            "version": 2,
            "changes": {"parks_changed": ["a"], "devices_changed": ["a/pv"]},
        },
    ]
    assert ledgers.verify_audit() == []


def test_api_edit_survives_a_restart_until_the_file_changes(
    ledgers: LedgerStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "parks.yaml"
    path.write_text(BASE)
    store = RegistryStore(ledgers, path)
    v1 = store.startup()
    wind = parse_registry(BASE + "      - {id: wind, role: wind}\n")
    saved, diff = store.save(
        wind, v1.registry, "key-ops", expected_version=1, comment="new turbine"
    )
    assert saved.version == 2 and saved.source == "api" and diff.devices_added == ("b/wind",)
    assert saved.file_sha256 == v1.file_sha256  # still descends from the same file
    # restart with the file untouched: the edit stays in force
    assert store.startup().registry == wind
    # the file is edited afterwards: it wins, and the log says what it replaced
    path.write_text(BASE.replace("max_kw: 100", "max_kw: 90"))
    with caplog.at_level(logging.WARNING):
        v3 = store.startup()
    assert v3.version == 3 and v3.registry.device("b", "wind") is None
    assert "replaces version 2 (edited by key-ops)" in caplog.text
    assert [e["actor"] for e in registry_audit(ledgers)] == [FILE_ACTOR, "key-ops", FILE_ACTOR]
    # every version is kept for the auditors, each with what it changed
    history = store.history()
    assert [(s.version, s.comment) for s, _ in history][1] == (2, "new turbine")
    assert [d.devices_removed for _, d in history] == [(), (), ("b/wind",)]


def test_save_refuses_a_stale_base(ledgers: LedgerStore, tmp_path: Path) -> None:
    path = tmp_path / "parks.yaml"
    path.write_text(BASE)
    store = RegistryStore(ledgers, path)
    v1 = store.startup()
    store.save(pv_max_kw(1), v1.registry, "k1", expected_version=1)
    with pytest.raises(VersionConflictError):
        store.save(pv_max_kw(2), v1.registry, "k2", expected_version=1)
    assert store.latest().registry.device("a", "pv").max_kw == 1  # type: ignore[union-attr]


def test_processes_starting_together_import_the_file_once(sql_url: str, tmp_path: Path) -> None:
    path = tmp_path / "parks.yaml"
    path.write_text(BASE)
    stores = [LedgerStore(sql_url) for _ in range(4)]
    results: list[int] = []
    barrier = threading.Barrier(len(stores))

    def start(ledgers: LedgerStore) -> None:
        barrier.wait()
        results.append(RegistryStore(ledgers, path).startup().version)

    threads = [threading.Thread(target=start, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert results == [1, 1, 1, 1]
        assert stores[0].latest_registry_version() == 1
    finally:
        for s in stores:
            s.close()


def test_missing_file_runs_on_the_stored_version_and_a_bad_file_is_refused(
    ledgers: LedgerStore, tmp_path: Path
) -> None:
    path = tmp_path / "parks.yaml"
    with pytest.raises(RegistryError, match="cannot read the park registry"):
        RegistryStore(ledgers, path).startup()
    path.write_text(BASE)
    RegistryStore(ledgers, path).startup()
    path.unlink()
    assert RegistryStore(ledgers, path).startup().version == 1
    path.write_text(BASE.replace("role: pv", "role: sun"))
    with pytest.raises(RegistryError, match=r"parks.yaml:\d+: .*role"):
        RegistryStore(ledgers, path).startup()


def test_collector_without_a_reachable_ledger_runs_on_the_file(tmp_path: Path) -> None:
    from app.config import Settings
    from collectors.registry_source import own_registry

    path = tmp_path / "parks.yaml"
    path.write_text(BASE)
    (tmp_path / "ledger.db").mkdir()  # a directory where SQLite wants its file: cannot open
    settings = Settings(parks=path, data_dir=tmp_path, db_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    holder, watch = own_registry(settings)
    assert holder.registry == parse_registry(BASE) and holder.version == 0
    assert watch is None


async def test_watcher_follows_other_processes_and_the_file(
    sql_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "parks.yaml"
    path.write_text(BASE)
    mine, other = LedgerStore(sql_url), LedgerStore(sql_url)
    try:
        holder, watcher = open_registry(mine, path, poll_s=0.05)
        switched: list[int] = []
        holder.subscribe(lambda c: switched.append(c.version))
        assert await watcher.check() is False  # nothing new

        # another process (an API replica) stores an edit
        theirs = RegistryStore(other, path)
        theirs.save(pv_max_kw(7), holder.registry, "key-x", expected_version=1)
        assert await watcher.check() is True
        assert holder.version == 2 and holder.registry.device("a", "pv").max_kw == 7  # type: ignore[union-attr]

        # the file is edited: the watcher imports it as version 3 and switches
        path.write_text(BASE.replace("max_kw: 100", "max_kw: 8"))
        assert await watcher.check() is True
        assert holder.version == 3 and holder.registry.device("a", "pv").max_kw == 8  # type: ignore[union-attr]
        assert switched == [2, 3]

        # a broken file edit is logged once and changes nothing; fixing it is picked up
        path.write_text(BASE.replace("role: pv", "role: sun"))
        with caplog.at_level(logging.WARNING):
            assert await watcher.check() is False
            assert await watcher.check() is False
        assert caplog.text.count("park registry not reloaded (keeping version 3)") == 1
        path.write_text(BASE.replace("max_kw: 100", "max_kw: 9"))
        task = asyncio.create_task(watcher.run())
        try:
            for _ in range(200):
                if holder.version == 4:
                    break
                await asyncio.sleep(0.02)
        finally:
            task.cancel()
        assert holder.version == 4 and holder.registry.device("a", "pv").max_kw == 9  # type: ignore[union-attr]
    finally:
        mine.close()
        other.close()


def test_collect_api_and_up_take_the_ledger_and_poll_flags(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from lingtan.cli import _settings, build_parser

    monkeypatch.chdir(tmp_path)  # no .env / lingtan.toml of the repo
    for command in ("collect", "api", "up"):
        args = build_parser().parse_args(
            [command, "--db-url", "sqlite:///shared.db", "--registry-poll-s", "0.5"]
        )
        settings = _settings(args)
        assert settings.ledger_url == "sqlite:///shared.db"
        assert settings.registry_poll_s == 0.5
