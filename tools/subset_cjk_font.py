"""Builds app/evaluation/fonts/NotoSansSC-Regular-subset.ttf from Noto Sans SC (run by hand).

Usage: pip install fonttools && python tools/subset_cjk_font.py 'NotoSansSC[wght].ttf' OUT.ttf

The source is the variable TrueType Noto Sans SC of Google Fonts (SIL OFL 1.1). The script
pins the weight to Regular (400) and keeps Latin, Latin-1, general punctuation, letterlike
symbols, arrows, mathematical operators (≤ ≥), box drawing, CJK symbols, full-width forms and
every character of GB 2312 (6,763 hanzi): about 8,800 characters, 2.5 MB.
"""

from __future__ import annotations

import contextlib
import sys

from fontTools import subset  # type: ignore[import-untyped]
from fontTools.ttLib import TTFont  # type: ignore[import-untyped]
from fontTools.varLib.instancer import instantiateVariableFont  # type: ignore[import-untyped]

RANGES = [
    (0x0020, 0x007E),
    (0x00A0, 0x017F),
    (0x2000, 0x206F),
    (0x2070, 0x209F),
    (0x20A0, 0x20CF),
    (0x2100, 0x214F),
    (0x2190, 0x21FF),
    (0x2200, 0x22FF),
    (0x2460, 0x24FF),
    (0x2500, 0x257F),
    (0x25A0, 0x25FF),
    (0x3000, 0x303F),
    (0xFF00, 0xFFEF),
]


def charset() -> set[int]:
    """The code points kept: the ranges above and all of GB 2312."""
    chars: set[int] = set()
    for lo, hi in RANGES:
        chars |= set(range(lo, hi + 1))
    for row in range(0xA1, 0xF8):
        for cell in range(0xA1, 0xFF):
            with contextlib.suppress(UnicodeDecodeError):
                chars |= {ord(c) for c in bytes([row, cell]).decode("gb2312")}
    return chars


def main(src: str, out: str) -> None:
    font = instantiateVariableFont(TTFont(src), {"wght": 400}, updateFontNames=True)
    opts = subset.Options()
    opts.layout_features = ["*"]
    opts.name_IDs = ["*"]
    opts.name_languages = ["*"]
    opts.notdef_outline = True
    opts.hinting = False
    sub = subset.Subsetter(opts)
    sub.populate(unicodes=charset())
    sub.subset(font)
    font.save(out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
