"""InfluxDB line-protocol encoding: escaping of names, tags and strings, and value formatting.

Rules (checked against a real influxd 1.6 and `influxdb_client.Point`):
- measurement: escape `,` and space;
- tag keys, tag values, field keys: escape `,`, `=` and space;
- string field values: double-quoted, escape `"` and `\\`;
- backslashes elsewhere are kept literally (influxd does not unescape `\\\\` in names/tags);
- tabs and carriage returns are kept literally too: influxd stores them as-is, whereas the
  `\\t`/`\\r` escapes some clients emit are stored as two characters (lossy);
- a newline cannot appear in a name/tag (it ends the line), a name/tag cannot end with a
  backslash (it would escape the separator) and cannot be empty: those raise
  `LineProtocolError` instead of silently writing something else.
"""

from __future__ import annotations

import math
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


def _check_name(s: str, what: str) -> None:
    if not s:
        raise LineProtocolError(f"empty {what}")
    if "\n" in s:
        raise LineProtocolError(f"{what} contains a newline: {s!r}")
    if s.endswith("\\"):
        raise LineProtocolError(f"{what} ends with a backslash: {s!r}")


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
