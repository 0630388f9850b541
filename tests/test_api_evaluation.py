"""`/evaluation` on a real influxd: a hand-computed synthetic year, targets, downloads, 4xx."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path

import httpx
import openpyxl
import pytest

from app.accounting import BalanceFields, BalanceResult, BucketBalance, get_factor_set
from app.accounting.buckets import to_ns
from app.accounting.result import Sums
from app.config import Settings
from app.evaluation import (
    EvaluationConfig,
    SizeBand,
    build_report,
    canonical_json,
    report_hash,
)
from app.intervals.models import IntervalEnergy
from app.ledgers import ApiRole, LedgerStore
from app.live.state import LiveState
from app.main import create_app
from app.registry import parse_registry
from app.storage.base import WriteBatch
from app.storage.influx import InfluxStorage
from tests.api_support import Api
from tests.fixtures.influx import InfluxServer

REGISTRY_YAML = """
parks:
  - id: eval
    name: 零碳示范园
    timezone: Asia/Shanghai
    grid_region: northeast
    factor_set: cn-2023
    interval_minutes: 60
    devices:
      - {id: grid, role: grid}
      - {id: pv, role: pv}
      - {id: boiler, role: heat_fuel, fuel: natural_gas}
      - {id: steam, role: heat_purchased}
      - {id: whr, role: heat_recovered}
"""

# Per hour, every hour of the data: grid import 100 kWh, pv 50 kWh (no export), 10 m³ natural
# gas, 1 GJ purchased steam, 2 GJ recovered waste heat.
# cn-2023 northeast: EF_grid 0.5122, EF_residual 0.6096 kgCO2/kWh; gas 2.162 kgCO2/m³ and
# 1.2143 kgce/m³; heat 110 kgCO2/GJ and 34.1 kgce/GJ; electricity 0.1229 kgce/kWh.
CONS_H = 150.0  # kWh = 100 + 50
KGCE_H = 150 * 0.1229 + 10 * 1.2143 + 1 * 34.1  # 64.678
NET_H = 10 * 2.162 + 100 * 0.6096 + 110  # 192.58 kg (market)
LOC_H = 10 * 2.162 + 100 * 0.5122 + 110  # 182.84 kg (location)
FUEL_GJ_H = 10 * 1.2143 / 1000 * 29.3076  # fuel heat: kgce → tce → GJ
# Jan (744 h) and Feb (672 h) every hour, March every other hour (372 of 744 h): coverage 0.5.
HOURS = 744 + 672 + 372
OFFSET_T = 10.0  # an offset of 10 tCO2 dated 2025-02-01
NOW = "2026-01-10T00:00:00+08:00"


@pytest.fixture
async def api(fresh_influx_db: InfluxServer, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    reg = parse_registry(REGISTRY_YAML)
    storage = InfluxStorage(fresh_influx_db.url, database=fresh_influx_db.database)
    ledgers = LedgerStore(sqlite_url)
    clock = [to_ns(datetime.fromisoformat(NOW))]
    live = LiveState(reg, clock=lambda: clock[0], min_render_interval_s=0.0)
    app = create_app(
        Settings(
            data_dir=tmp_path,
            parks=tmp_path / "parks.yaml",
            max_balance_span=timedelta(days=400),
        ),
        registry=reg,
        storage=storage,
        ledgers=ledgers,
        live=live,
        refresh_today_in_background=False,
    )
    app.state.services.balance.clock = lambda: clock[0]
    app.state.services.balance.cache.clock = lambda: clock[0]
    keys = {r.value: ledgers.create_key(r, f"test {r.value}", "system").key for r in ApiRole}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        try:
            yield Api(app, client, storage, ledgers, live, reg, keys, clock)
        finally:
            await storage.close()
            ledgers.close()


def _hour_rows(start: datetime) -> list[IntervalEnergy]:
    s = to_ns(start)
    e = s + 3_600_000_000_000
    values = {
        "grid": ("grid", {"energy_import_kwh": 100.0, "energy_export_kwh": 0.0}),
        "pv": ("pv", {"energy_kwh": 50.0}),
        "boiler": ("heat_fuel", {"gas_m3": 10.0}),
        "steam": ("heat_purchased", {"heat_gj": 1.0}),
        "whr": ("heat_recovered", {"heat_gj": 2.0}),
    }
    return [IntervalEnergy("eval", d, role, s, e, dict(v)) for d, (role, v) in values.items()]


async def write_year(api: Api) -> None:
    t0 = datetime.fromisoformat("2025-01-01T00:00:00+08:00")
    mar = datetime.fromisoformat("2025-03-01T00:00:00+08:00")
    rows: list[IntervalEnergy] = []
    for h in range(744 + 672):
        rows += _hour_rows(t0 + timedelta(hours=h))
    for h in range(0, 744, 2):
        rows += _hour_rows(mar + timedelta(hours=h))
    await api.storage.write(WriteBatch(intervals=rows))
    api.ledgers.add_offset(
        "eval",
        {"id": "ccer-1", "kind": "ccer", "tco2": OFFSET_T, "date": date(2025, 2, 1)},
    )


def _by_id(doc: dict[str, object]) -> dict[str, dict[str, object]]:
    guiding = doc["guiding"]
    assert isinstance(guiding, list)
    return {g["id"]: g for g in guiding}


async def test_hand_computed_year(api: Api) -> None:
    await write_year(api)
    r = await api.get("/api/v1/parks/eval/evaluation", params={"year": 2025})
    assert r.status_code == 200, r.text[:500]
    doc = r.json()
    assert doc["park"] == "eval" and doc["year"] == 2025
    assert doc["factor_set"]["name"] == "cn-2023"
    assert doc["window"]["start"] == "2025-01-01T00:00:00+08:00"
    assert doc["window"]["end"] == "2026-01-01T00:00:00+08:00"
    assert doc["window"]["full_year"] is True
    assert doc["months_with_data"] == ["2025-01", "2025-02", "2025-03"]
    assert doc["completeness"] == pytest.approx(HOURS / 8760)
    assert len(doc["monthly"]) == 12
    assert doc["monthly"][2]["coverage"] == pytest.approx(0.5)

    energy_tce = KGCE_H * HOURS / 1000
    gross_kg = NET_H * HOURS
    net_kg = gross_kg - OFFSET_T * 1000
    assert doc["energy_tce"] == pytest.approx(energy_tce)

    core = doc["core"]
    assert core["unit"] == "tCO2/tce" and core["view"] == "market"
    assert core["value"] == pytest.approx(net_kg / 1000 / energy_tce)
    assert core["before_offsets"] == pytest.approx(gross_kg / 1000 / energy_tce)
    assert core["offsets_share"] == pytest.approx(OFFSET_T * 1000 / gross_kg)
    loc = (LOC_H * HOURS - OFFSET_T * 1000) / 1000 / energy_tce
    assert core["location_based"]["value"] == pytest.approx(loc)
    # ~567 tce/year: below the 200k–1M band, so the strictest threshold 0.2 applies (flagged)
    assert core["target"] == pytest.approx(0.2)
    assert core["size_in_programme_bands"] is False
    assert core["pass"] is False and core["location_based"]["pass"] is False
    assert core["months"] == ["2025-01", "2025-02", "2025-03"]
    assert core["completeness"] == pytest.approx(HOURS / 8760)

    # Projection: Jan, Feb in full, March scaled ×2 (coverage 0.5) = 2160 h-equivalents over
    # 2160 h of months → ×8760/2160; the offset (in February) is extrapolated the same way.
    proj_energy = KGCE_H * 8760 / 1000
    proj_net = NET_H * 8760 - OFFSET_T * 1000 * 8760 / 2160
    assert doc["energy_tce_projected"] == pytest.approx(proj_energy)
    assert core["projection"]["value"] == pytest.approx(proj_net / 1000 / proj_energy)
    assert core["projection"]["pass"] is False

    g = _by_id(doc)
    clean = g["clean_energy_share"]
    assert clean["value"] == pytest.approx(50 * 0.1229 / KGCE_H)
    assert clean["target"] == pytest.approx(0.9) and clean["pass"] is False
    assert clean["target_confirmed"] is False
    assert clean["projection"]["value"] == pytest.approx(50 * 0.1229 / KGCE_H)
    green = g["green_electricity_share"]
    assert green["value"] == pytest.approx(50 / CONS_H)
    assert green["physical"] == pytest.approx(50 / CONS_H)
    assert green["target"] is None and green["pass"] is None
    heat = g["waste_heat_utilisation"]
    util = 2 / (2 + 1 + FUEL_GJ_H)
    assert heat["value"] == pytest.approx(util)
    assert heat["fuel_heat_gj"] == pytest.approx(FUEL_GJ_H * HOURS)
    assert heat["target"] == pytest.approx(0.5) and heat["pass"] is True
    assert heat["months"] == ["2025-01", "2025-02", "2025-03"]
    assert heat["projection"] == {
        "value": pytest.approx(util),
        "pass": True,
        "status": "projected",
    }

    # the hash is sha256 of the canonical JSON without it, and reproducible
    assert doc["hash"] == report_hash(doc)
    assert len(doc["hash"]) == 64
    assert canonical_json({"b": 1, "a": "零"}) == '{"a":"零","b":1}'.encode()
    again = await api.get("/api/v1/parks/eval/evaluation", params={"year": 2025})
    assert again.json()["hash"] == doc["hash"]

    # provenance: the registry version and the audit log's head, an anchor to verify against
    seq, head = api.ledgers.audit_head()
    assert seq > 0
    assert doc["provenance"] == {
        "registry_version": 0,
        "audit_head": {"seq": seq, "hash": head, "anchor": f"{seq}:{head}"},
    }
    assert api.ledgers.verify_audit(anchor=(seq, head)) == []


async def test_configured_thresholds(api: Api) -> None:
    await write_year(api)
    api.app.state.evaluation_config = EvaluationConfig(
        size_bands=(SizeBand(0.0, 1000.0, 5.0), SizeBand(1000.0, None, 1.0)),
        clean_energy_share_min=0.05,
        green_electricity_share_min=0.5,
        waste_heat_utilisation_min=0.6,
    )
    doc = (await api.get("/api/v1/parks/eval/evaluation", params={"year": 2025})).json()
    core = doc["core"]
    # projected ~567 tce/year falls in [0, 1000) → ≤ 5.0 tCO2/tce
    assert core["target"] == pytest.approx(5.0) and core["size_in_programme_bands"] is True
    assert core["pass"] is True and core["projection"]["pass"] is True
    g = _by_id(doc)
    assert g["clean_energy_share"]["pass"] is True  # 0.095 ≥ 0.05
    assert g["green_electricity_share"]["pass"] is False  # 0.333 < 0.5
    assert g["waste_heat_utilisation"]["pass"] is False  # 0.596 < 0.6


async def test_current_year_without_data_and_errors(api: Api) -> None:
    r = await api.get("/api/v1/parks/eval/evaluation")  # default: this year (2026)
    assert r.status_code == 200, r.text[:300]
    doc = r.json()
    assert doc["year"] == 2026
    assert doc["window"]["end"] == "2026-01-10T00:00:00+08:00"
    assert doc["window"]["full_year"] is False
    assert doc["months_with_data"] == [] and doc["core"]["value"] is None
    assert doc["core"]["pass"] is None and doc["core"]["projection"]["value"] is None
    assert doc["completeness"] == pytest.approx(0.0)

    assert (
        await api.get("/api/v1/parks/nope/evaluation", params={"year": 2025})
    ).status_code == 404
    for bad in ("2027", "1999", "abc"):
        resp = await api.get("/api/v1/parks/eval/evaluation", params={"year": bad})
        assert resp.status_code == 422, bad
    resp = await api.get("/api/v1/parks/eval/evaluation", params={"year": 2025, "format": "doc"})
    assert resp.status_code == 422
    assert (await api.client.get("/api/v1/parks/eval/evaluation")).status_code == 401


def _pdf_text(body: bytes) -> str:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(body))
    return "\n".join(page.extract_text() or "" for page in reader.pages)


async def test_xlsx_in_both_languages(api: Api) -> None:
    await write_year(api)
    doc = (await api.get("/api/v1/parks/eval/evaluation", params={"year": 2025})).json()
    names = {
        "en": [
            "Carbon emissions per unit of energy",
            "Clean-energy consumption share",
            "Green-electricity share",
            "Waste-heat utilisation",
        ],
        "zh": ["单位能耗碳排放", "清洁能源消费占比", "绿色电力消费占比", "余热利用率"],
    }
    for lang in ("zh", "en"):
        r = await api.get(
            "/api/v1/parks/eval/evaluation", params={"year": 2025, "format": "xlsx", "lang": lang}
        )
        assert r.status_code == 200, r.text[:300]
        assert r.headers["content-type"].startswith("application/vnd.openxmlformats")
        assert r.headers["x-report-hash"] == doc["hash"]
        wb = openpyxl.load_workbook(io.BytesIO(r.content))
        assert len(wb.sheetnames) == 3  # indicators, monthly data, data quality
        ws = wb.worksheets[0]
        cells = [[c for c in row] for row in ws.iter_rows(values_only=True)]
        flat = [str(c) for row in cells for c in row if c is not None]
        for name in names[lang]:
            assert any(name in c for c in flat), (lang, name)
        other = "en" if lang == "zh" else "zh"
        assert not any(names[other][3] in c for c in flat)
        assert doc["hash"] in flat
        assert doc["provenance"]["audit_head"]["anchor"] in flat
        assert any("cn-2023" in c for c in flat)
        # the indicator rows hold numbers: the market core value, then the location value
        core_rows = [row for row in cells if row[1] and str(row[1]).startswith(names[lang][0])]
        assert len(core_rows) == 2
        assert core_rows[0][3] == pytest.approx(doc["core"]["value"])
        assert core_rows[1][3] == pytest.approx(doc["core"]["location_based"]["value"])
        heat_row = next(row for row in cells if row[1] == names[lang][3])
        assert heat_row[3] == pytest.approx(2 / (2 + 1 + FUEL_GJ_H))
        assert heat_row[5] == ("达标" if lang == "zh" else "pass")
        monthly = list(wb.worksheets[1].iter_rows(values_only=True))
        assert len(monthly) == 1 + 12
        assert monthly[1][0] == "2025-01"
        assert monthly[1][1] == pytest.approx(CONS_H * 744)


async def test_pdf_in_both_languages(api: Api) -> None:
    await write_year(api)
    en = await api.get(
        "/api/v1/parks/eval/evaluation", params={"year": 2025, "format": "pdf", "lang": "en"}
    )
    assert en.status_code == 200, en.text[:300]
    assert en.headers["content-type"] == "application/pdf"
    assert en.content.startswith(b"%PDF")
    digest = en.headers["x-report-hash"]
    text = _pdf_text(en.content)
    flat = " ".join(text.split())
    for name in (
        "Carbon emissions per unit of energy",
        "Clean-energy consumption share",
        "Green-electricity share",
        "Waste-heat utilisation",
        "cn-2023",
        "Monthly energy and net emissions",
        "零碳示范园",  # the Chinese park name, drawn from the embedded font in English too
    ):
        assert name in flat, name
    assert digest in flat.replace(" ", "")
    seq, head = api.ledgers.audit_head()
    assert f"{seq}:{head}" in flat.replace(" ", "")
    # the Accept header selects the format too
    zh = await api.get(
        "/api/v1/parks/eval/evaluation",
        params={"year": 2025, "lang": "zh"},
        headers={"Accept": "application/pdf"},
    )
    assert zh.status_code == 200 and zh.content.startswith(b"%PDF")
    assert zh.headers["x-report-hash"] == digest
    assert b"STSong-Light" not in zh.content and b"+NotoSansSC-Regular" in zh.content
    zh_text = " ".join(_pdf_text(zh.content).split())
    assert digest in zh_text.replace(" ", "")
    for name in ("单位能耗碳排放", "余热利用率"):
        assert name in zh_text.replace(" ", ""), name


def _year_result(energy_tce_per_month: float, net_t_per_month: float) -> BalanceResult:
    """A synthetic full year (12 complete months) for the pure report logic."""
    park = parse_registry(REGISTRY_YAML).park("eval")
    assert park is not None
    buckets = []
    for m in range(1, 13):
        lo = datetime(2025, m, 1, tzinfo=park.tz)
        hi = datetime(2025 + m // 12, m % 12 + 1, 1, tzinfo=park.tz)
        s = Sums(energy_kgce=energy_tce_per_month * 1000, scope1_kg=net_t_per_month * 1000)
        s.expected_intervals = s.measured_intervals = 10
        buckets.append(BucketBalance(lo, hi, BalanceFields.from_sums(s)))
    start, end = buckets[0].start, buckets[-1].end
    total = Sums(energy_kgce=energy_tce_per_month * 12_000)
    return BalanceResult(
        "eval",
        "cn-2023",
        start,
        end,
        "1mo",
        tuple(buckets),
        BalanceFields.from_sums(total),
        (),
        (),
        {},
        {},
        {},
    )


@pytest.mark.parametrize(
    ("tce_per_month", "t_per_month", "threshold", "ok"),
    [
        (50_000.0, 9_000.0, 0.2, True),  # 600k tce/a → ≤ 0.2; 0.18 passes
        (50_000.0, 12_000.0, 0.2, False),  # 0.24 fails the 0.2 band (would pass 0.3)
        (100_000.0, 25_000.0, 0.3, True),  # 1.2M tce/a → ≤ 0.3; 0.25 passes
        (100_000.0, 31_000.0, 0.3, False),  # 0.31 fails
    ],
)
def test_size_bands(tce_per_month: float, t_per_month: float, threshold: float, ok: bool) -> None:
    park = parse_registry(REGISTRY_YAML).park("eval")
    assert park is not None
    doc = build_report(
        _year_result(tce_per_month, t_per_month),
        park,
        get_factor_set("cn-2023"),
        year=2025,
        year_start=datetime(2025, 1, 1, tzinfo=park.tz),
        year_end=datetime(2026, 1, 1, tzinfo=park.tz),
    )
    core = doc["core"]
    assert core["size_in_programme_bands"] is True
    assert core["value"] == pytest.approx(t_per_month / tce_per_month)
    assert core["target"] == pytest.approx(threshold)
    assert core["pass"] is ok and core["projection"]["pass"] is ok
    assert doc["energy_tce_projected"] == pytest.approx(tce_per_month * 12)
