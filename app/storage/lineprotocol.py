r"""InfluxDB line-protocol encoding: escaping of names, tags and strings, and value formatting.

Rules (checked against a real influxd 1.6 and `influxdb_client.Point`):
- measurement: escape `,` and space;
- tag keys, tag values, field keys: escape `,`, `=` and space;
- string field values: double-quoted, escape `"` and `\`;
- backslashes elsewhere are kept literally (influxd does not unescape `\\` in names/tags);
- a name or tag value cannot be empty, contain an ASCII control character (a newline ends
  the line; influxd 1.x mangles keys made of or starting with NUL/TAB, and the `\n`/`\t`
  escapes some clients emit are stored as two characters), or have a backslash right before
  `,`, `=`, space or at its end (influxd reads `\` + next char as one escape pair, so that
  cannot be expressed): those raise `LineProtocolError` instead of silently writing
  something else. String field values can hold anything.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

FieldValue = float | int | bool | str

_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ "})
_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_STRING = str.maketrans({"\\": "\\\\", '"': '\\"'})

# Names and tag values repeat endlessly (parks, devices, quantity names), so their escaped
# form is memoised; the cache is simply reset when it grows past a bound.
_CACHE_MAX = 65536
_key_cache: dict[str, str] = {}


class LineProtocolError(ValueError):
    """A name, tag or value that line protocol cannot represent faithfully."""


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# influxd's scanner takes `\` plus the next character as a pair, so a literal backslash right
# before a character that needs escaping (or at the end) cannot be expressed.
_BAD_BACKSLASH = re.compile(r"\\(?=[,= ]|$)")


def representable_name(s: str) -> bool:
    """True if `s` can be a measurement, tag key/value or field key and read back unchanged."""
    return bool(s) and _CONTROL.search(s) is None and _BAD_BACKSLASH.search(s) is None


def _check_name(s: str, what: str) -> None:
    if not s:
        raise LineProtocolError(f"empty {what}")
    if _CONTROL.search(s):
        raise LineProtocolError(f"{what} contains a control character (e.g. newline): {s!r}")
    if _BAD_BACKSLASH.search(s):
        raise LineProtocolError(f"{what} has a backslash before `,`/`=`/space or at the end: {s!r}")


def escape_measurement(name: str) -> str:
    _check_name(name, "measurement")
    if name.startswith("#"):
        raise LineProtocolError(f"measurement starts with '#' (a comment): {name!r}")
    return name.translate(_MEASUREMENT)


def escape_key(s: str) -> str:
    """Escape a tag key, tag value or field key (memoised)."""
    try:
        return _key_cache[s]
    except KeyError:
        pass
    _check_name(s, "tag or field key/value")
    out = s.translate(_KEY)
    if len(_key_cache) >= _CACHE_MAX:
        _key_cache.clear()
    _key_cache[s] = out
    return out


escape_tag_value = escape_key


def escape_string(s: str) -> str:
    """A string field value, with its surrounding double quotes."""
    return '"' + s.translate(_STRING) + '"'


def format_float(x: float) -> str:
    """Shortest exact repr of a float; never an integer literal with `i` (type conflicts)."""
    if not math.isfinite(x):
        raise LineProtocolError(f"non-finite float {x!r}")
    s = repr(float(x))
    # "12.0" -> "12": still a float in line protocol (integers need the `i` suffix).
    return s[:-2] if s.endswith(".0") else s


def format_field_value(v: FieldValue) -> str:
    t = type(v)
    if t is float:
        return format_float(v)  # type: ignore[arg-type]
    if t is bool:
        return "true" if v else "false"
    if t is str:
        return escape_string(v)  # type: ignore[arg-type]
    if isinstance(v, int):
        return format_float(float(v))
    raise LineProtocolError(f"unsupported field value type {t.__name__}")


def encode_fields(fields: Mapping[str, FieldValue]) -> str:
    """`k=v,...` sorted by key (like influxdb-client); raises on an empty field set."""
    if not fields:
        raise LineProtocolError("a point needs at least one field")
    return ",".join(escape_key(k) + "=" + format_field_value(v) for k, v in sorted(fields.items()))


def encode_tags(tags: Mapping[str, str]) -> str:
    """`,k=v...` sorted by key; empty tag values are left out (influx has no empty tags)."""
    return "".join(
        "," + escape_key(k) + "=" + escape_key(v) for k, v in sorted(tags.items()) if v != ""
    )


def encode_line(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, FieldValue],
    ts_ns: int | None = None,
) -> str:
    """One line of line protocol (no trailing newline)."""
    head = escape_measurement(measurement) + encode_tags(tags) + " " + encode_fields(fields)
    return head if ts_ns is None else head + " " + str(int(ts_ns))
