"""Chained days kept in the store (docs/storage.md §10): a fresh process continues the chain
from them, and stops at the first day any input of which changed — certificates, offsets,
corrections, data, the registry entry, the factor set."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from app.accounting import Certificate, Offset, get_factor_set
from app.balance.cache import IntervalCache
from app.balance.chain_store import chain_kind, decode_result, encode_result
from app.balance.service import BalanceService
from app.corrections import Correction
from app.registry import parse_registry
from app.registry.models import Park
from app.storage.base import WriteBatch
from tests.balance_reference import mismatches, recompute
from tests.memory_store import MemoryIntervals, MemoryLedgers
from tests.test_balance_interleavings import (
    DEVICES,
    FIRST,
    NOW_NS,
    PARK,
    REGISTRY_YAML,
    row,
    start_ns,
    when,
)

FS = get_factor_set(PARK.factor_set)
END_Q = 2 * 96 + 4  # two days, the DST day the second ("today", NOW_NS, is the third)


def service(store: MemoryIntervals, ledgers: MemoryLedgers) -> BalanceService:
    cache = IntervalCache(store, clock=lambda: NOW_NS)  # type: ignore[arg-type]
    return BalanceService(cache, ledgers, epoch=FIRST.date(), clock=lambda: NOW_NS)  # type: ignore[arg-type]


async def seeded() -> tuple[MemoryIntervals, MemoryLedgers]:
    store, ledgers = MemoryIntervals(), MemoryLedgers()
    rows = [row(d, q, 20 + q % 9, 5 + q % 4) for q in range(END_Q) for d in DEVICES]
    await store.write(WriteBatch(intervals=rows))
    ledgers.certificates["c0"] = Certificate("c0", "x", "gec", 0.4, when(0), when(END_Q))
    ledgers.edited()
    return store, ledgers


async def answer(svc: BalanceService, park: Park = PARK) -> dict[str, Any]:
    return (await svc.balance(park, when(0), when(END_Q), "1d")).as_dict()


async def check(store: MemoryIntervals, ledgers: MemoryLedgers, got: dict[str, Any]) -> None:
    want = recompute(
        await store.intervals("x", start_ns(0), start_ns(END_Q)),
        PARK,
        ledgers.certificates_for("x"),
        ledgers.offsets_for("x"),
        FS,
        when(0),
        when(END_Q),
        "1d",
        epoch=FIRST.date(),
    )
    assert not mismatches(got, want), mismatches(got, want)[:4]


async def test_a_fresh_process_continues_the_stored_chain() -> None:
    store, ledgers = await seeded()
    first = service(store, ledgers)
    got = await answer(first)
    assert first.computed_days == 2 and first.loaded_days == 0
    second = service(store, ledgers)  # a replica, or the same after a restart
    assert await answer(second) == got
    assert second.loaded_days == 2 and second.computed_days == 0
    await check(store, ledgers, got)


async def _after(
    edit: str,
) -> tuple[BalanceService, dict[str, Any], MemoryIntervals, MemoryLedgers]:
    store, ledgers = await seeded()
    await answer(service(store, ledgers))  # stores the chain
    if edit == "certificate":  # valid on the second day only
        ledgers.certificates["c1"] = Certificate("c1", "x", "gec", 0.3, when(100), when(110))
        ledgers.edited()
    elif edit == "revoke":
        del ledgers.certificates["c0"]
        ledgers.edited()
    elif edit == "offset":
        ledgers.offsets["o1"] = Offset("o1", "x", "ccer", 2.0, (FIRST + timedelta(days=1)).date())
        ledgers.edited()
    elif edit == "late data":
        await store.write(WriteBatch(intervals=[row("grid", 120, 500, 0)]))
    elif edit == "correction":
        ledgers.corrections.append(
            Correction(
                "k1", "x", "grid", "energy_import_kwh", start_ns(104), start_ns(108), "set", 7.0
            )
        )
        ledgers.edited()
    fresh = service(store, ledgers)
    return fresh, await answer(fresh), store, ledgers


async def test_a_stored_day_is_not_used_once_an_input_of_it_changed() -> None:
    # each edit acts from the second day on: the first day is continued, the rest computed
    for edit in ("certificate", "offset", "late data", "correction"):
        fresh, got, store, ledgers = await _after(edit)
        assert (fresh.loaded_days, fresh.computed_days) == (1, 1), edit
        if edit != "correction":  # the oracle reads stored rows, uncorrected
            await check(store, ledgers, got)
    # a revoked certificate valid from the first day: nothing stored is usable
    fresh, got, store, ledgers = await _after("revoke")
    assert (fresh.loaded_days, fresh.computed_days) == (0, 2)
    await check(store, ledgers, got)


async def test_another_registry_entry_or_factor_set_starts_a_chain_of_its_own() -> None:
    store, ledgers = await seeded()
    await answer(service(store, ledgers))
    text = REGISTRY_YAML.replace("capacity_kwh: 50", "capacity_kwh: 80")
    assert text != REGISTRY_YAML
    bigger = parse_registry(text).park("x")
    assert bigger is not None
    fresh = service(store, ledgers)
    await fresh.balance(bigger, when(0), when(END_Q), "1d")
    assert fresh.loaded_days == 0
    # a factor set of the same name but other factors is another chain too
    other = dataclasses.replace(FS, description=FS.description + " (edited)")
    svc = service(store, ledgers)
    svc.factor_sets = {FS.name: other}
    await svc.balance(PARK, when(0), when(END_Q), "1d")
    assert svc.loaded_days == 0 and chain_kind(other) == chain_kind(FS)


async def test_a_damaged_stored_day_is_computed_instead() -> None:
    store, ledgers = await seeded()
    got = await answer(service(store, ledgers))
    key = next(k for k in store.rollups if k[1] == chain_kind(FS))
    store.rollups[key] = dataclasses.replace(store.rollups[key], payload=b"\x93garbage")
    fresh = service(store, ledgers)
    assert await answer(fresh) == got
    assert fresh.computed_days >= 1


async def test_a_chained_day_decodes_to_what_was_computed() -> None:
    store, ledgers = await seeded()
    svc = service(store, ledgers)
    r = await svc.balance(PARK, when(0), when(96), "1d")
    back = decode_result(encode_result(r), PARK)
    assert back == r and back.as_dict() == r.as_dict()
