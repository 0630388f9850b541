"""The evaluation PDF reads anywhere: every font embedded, Chinese and ≤/≥ drawn (poppler)."""

from __future__ import annotations

import re
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen.canvas import Canvas

from app.accounting import BalanceFields, BalanceResult, BucketBalance, get_factor_set
from app.accounting.result import Sums
from app.evaluation import build_report
from app.evaluation.pdf import FONT, missing_glyphs, render_pdf
from app.registry import parse_registry

PARK_NAME = "沈抚示范零碳园区"
Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in points from the top left
REGISTRY_YAML = """
parks:
  - id: shenfu-demo
    name: {name}
    timezone: Asia/Shanghai
    grid_region: northeast
    factor_set: cn-2023
    devices:
      - {{id: grid, role: grid}}
      - {{id: pv, role: pv}}
"""


def _doc(name: str = PARK_NAME) -> dict[str, Any]:
    """A full synthetic year (12 complete months of 50 tce and 9 tCO2) for the demo park."""
    park = parse_registry(REGISTRY_YAML.format(name=name)).park("shenfu-demo")
    assert park is not None
    buckets = []
    for m in range(1, 13):
        lo = datetime(2025, m, 1, tzinfo=park.tz)
        hi = datetime(2025 + m // 12, m % 12 + 1, 1, tzinfo=park.tz)
        s = Sums(energy_kgce=50_000.0, scope1_kg=9_000.0)
        s.expected_intervals = s.measured_intervals = 10
        buckets.append(BucketBalance(lo, hi, BalanceFields.from_sums(s)))
    result = BalanceResult(
        "shenfu-demo",
        "cn-2023",
        buckets[0].start,
        buckets[-1].end,
        "1mo",
        tuple(buckets),
        BalanceFields.from_sums(Sums(energy_kgce=600_000.0)),
        (),
        (),
        {},
        {},
        {},
    )
    return build_report(
        result,
        park,
        get_factor_set("cn-2023"),
        year=2025,
        year_start=datetime(2025, 1, 1, tzinfo=park.tz),
        year_end=datetime(2026, 1, 1, tzinfo=park.tz),
    )


def _run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout


def _fonts(pdf: Path) -> list[dict[str, str]]:
    """`pdffonts` rows: name, type, emb, sub (the last columns are emb sub uni obj gen)."""
    lines = _run("pdffonts", str(pdf)).splitlines()
    assert lines[1].startswith("-----"), lines[:2]
    rows = []
    for line in lines[2:]:
        cols = line.split()
        rows.append(
            {"name": cols[0], "type": line[37:54].strip(), "emb": cols[-5], "sub": cols[-4]}
        )
    return rows


def _word_box(pdf: Path, word: str) -> Box:
    """Bounding box (points, page 1) of the first `pdftotext -bbox` word equal to `word`."""
    html = _run("pdftotext", "-bbox", "-f", "1", "-l", "1", str(pdf), "-")
    pat = r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>'
    for m in re.finditer(pat, html):
        if m.group(5) == word:
            x0, y0, x1, y1 = (float(m.group(i)) for i in range(1, 5))
            return x0, y0, x1, y1
    raise AssertionError(f"{word!r} not found on page 1")


def _glyph_cells(
    png: Path, box: tuple[float, float, float, float], n: int, dpi: int
) -> list[bytes]:
    """The box split into `n` equal cells (CJK glyphs are one em wide), each binarised."""
    img = Image.open(png).convert("L")
    k = dpi / 72.0
    x0, y0, x1, y1 = (round(v * k) for v in box)
    step = (x1 - x0) / n
    w = int(step)
    cells = []
    for i in range(n):
        left = round(x0 + i * step)
        cell = img.crop((left, y0, left + w, y1))
        cells.append(bytes(1 if p < 128 else 0 for p in cell.tobytes()))
    return cells


def _drawn_distinct(cells: list[bytes]) -> bool:
    """True when every cell has ink and no two cells look alike (tofu boxes are identical)."""
    for c in cells:
        ink = sum(c) / len(c)
        if not 0.03 < ink < 0.6:
            return False
    for i, a in enumerate(cells):
        for b in cells[i + 1 :]:
            differing = sum(x != y for x, y in zip(a, b, strict=True))
            if differing < 0.05 * len(a):
                return False
    return True


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_pdf_embeds_every_font_and_draws_chinese(lang: str, tmp_path: Path) -> None:
    pdf = tmp_path / f"evaluation-{lang}.pdf"
    pdf.write_bytes(render_pdf(_doc(), lang))

    fonts = _fonts(pdf)
    assert fonts, "pdffonts found no font"
    for f in fonts:
        assert f["emb"] == "yes", f
        assert f["sub"] == "yes", f
        # the shipped font only: no Helvetica, Times, Courier or STSong
        assert f["name"].endswith("+NotoSansSC-Regular"), f
        assert "Type 1" not in f["type"] and "CID Type 0" not in f["type"], f

    text = " ".join(_run("pdftotext", "-layout", str(pdf), "-").split())
    assert PARK_NAME in text
    # the core indicator's target, "≤ 0.2 tCO2/tce" for this size band
    assert "≤ 0.2" in text or "≤ 0.20" in text, text[:2000]
    assert "≥" in text  # the guiding indicators' targets
    title = "零碳园区评价报告" if lang == "zh" else "Zero-carbon park evaluation report"
    assert title in text

    dpi = 200
    _run("pdftoppm", "-png", "-r", str(dpi), "-f", "1", "-l", "1", str(pdf), str(tmp_path / "p"))
    png = next(tmp_path.glob("p-*1.png"))
    with Image.open(png) as img:
        assert img.size == (round(A4[0] / 72 * dpi), round(A4[1] / 72 * dpi))
    cells = _glyph_cells(png, _word_box(pdf, PARK_NAME), len(PARK_NAME), dpi)
    assert _drawn_distinct(cells)


def test_glyph_check_rejects_boxes(tmp_path: Path) -> None:
    """The pixel check fails on what an unembedded or CJK-less font gives: the same box drawn
    eight times, and nothing drawn at all."""
    dpi = 200
    for name, text in (("tofu", "□" * 8), ("blank", "")):
        pdf = tmp_path / f"{name}.pdf"
        c = Canvas(str(pdf), pagesize=A4)
        missing_glyphs("")  # registers the report font
        c.setFont(FONT, 16)
        c.drawString(100, 700, text)
        c.save()
        _run("pdftoppm", "-png", "-r", str(dpi), str(pdf), str(tmp_path / name))
        png = next(tmp_path.glob(f"{name}-*1.png"))
        box = (100.0, A4[1] - 700 - 14, 100.0 + 8 * 16, A4[1] - 700 + 4)
        assert not _drawn_distinct(_glyph_cells(png, box, 8, dpi)), name


def test_missing_glyphs_are_reported(tmp_path: Path) -> None:
    assert missing_glyphs(PARK_NAME + " ≤ ≥ tCO2/tce — 2025") == ""
    # 𠀀 (U+20000, CJK extension B) is outside the shipped subset
    assert missing_glyphs("园区𠀀𠀀") == "𠀀"
    pdf = tmp_path / "rare.pdf"
    pdf.write_bytes(render_pdf(_doc("零碳园区𠀀"), "en"))
    text = " ".join(_run("pdftotext", str(pdf), "-").split())
    assert "characters missing from the report font (shown as boxes): U+20000" in text
