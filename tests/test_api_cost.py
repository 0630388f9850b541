"""A tariff put through the registry API prices `/balance` at once (docs/cost.md); a bad one
is refused with the rule it breaks, and nothing changes."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from app.registry import load_registry
from app.storage.base import WriteBatch
from tests.api_support import Api, iv
from tests.test_api_registry import api, put  # noqa: F401  (the fixture)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "parks.yaml"
DAY = {"start": "2026-06-01T00:00:00+08:00", "end": "2026-06-02T00:00:00+08:00", "every": "1d"}


def example_tariff() -> dict[str, Any]:
    park = load_registry(EXAMPLES).park("shenfu-demo")
    assert park is not None and park.tariff is not None
    return park.tariff.model_dump(mode="json")


async def test_a_tariff_edit_prices_the_balance(api: Api) -> None:  # noqa: F811
    park = api.registry.park("demo")
    assert park is not None
    rows = [
        # Monday 2026-06-01 09:00: peak (07:30–11:30) at 0.90 → 90 CNY
        iv(park, "grid-main", datetime.fromisoformat("2026-06-01T09:00:00+08:00"), 60,
           energy_import_kwh=100.0, energy_export_kwh=0.0),
        # 23:00: valley at 0.30 → 15 CNY
        iv(park, "grid-main", datetime.fromisoformat("2026-06-01T23:00:00+08:00"), 60,
           energy_import_kwh=50.0, energy_export_kwh=0.0),
    ]  # fmt: skip
    await api.storage.write(WriteBatch(intervals=rows))
    before = (await api.get("/api/v1/parks/demo/balance", params=DAY)).json()
    assert before["total"]["cost_cny"] is None and before["total"]["cost"] is None

    demo = (await api.get("/api/v1/parks/demo")).json()
    r = await put(api, "/api/v1/parks/demo", {**demo, "tariff": example_tariff()})
    assert r.status_code in (200, 201), r.text
    assert r.json()["changes"]["parks_changed"] == ["demo"]

    after = (await api.get("/api/v1/parks/demo/balance", params=DAY)).json()
    assert after["total"]["cost_cny"] == 105.0
    assert after["total"]["cost"]["by_period"] == {
        "peak": {"kwh": 100.0, "cny": 90.0},
        "valley": {"kwh": 50.0, "cny": 15.0},
    }
    # every other figure as before
    assert {k: v for k, v in after["total"].items() if k not in ("cost_cny", "cost")} == {
        k: v for k, v in before["total"].items() if k not in ("cost_cny", "cost")
    }
    audit = (await api.get("/api/v1/audit", "auditor")).json()
    assert audit["items"][-1]["action"] == "registry.put"


async def test_a_tariff_with_a_gap_is_refused(api: Api) -> None:  # noqa: F811
    demo = (await api.get("/api/v1/parks/demo")).json()
    tariff = example_tariff()
    tariff["revisions"][0]["schedules"][1]["bands"].pop()  # 22:00–24:00 left uncovered
    before = api.svc.registry
    r = await put(api, "/api/v1/parks/demo", {**demo, "tariff": tariff})
    assert r.status_code == 422 and "00:00–24:00" in r.text
    assert api.svc.registry is before
