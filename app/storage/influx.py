# Long module: every InfluxQL/line-protocol call of the backend, inside app/storage by design.
"""`InfluxStorage`: the `Storage` protocol over InfluxDB's v1-compatible HTTP API (1.x/2.x/3.x)."""

from __future__ import annotations

import asyncio
import base64
import gzip as gzip_lib
import json
import logging
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from app.intervals.models import IntervalEnergy
from app.storage import schema
from app.storage.base import (
    FAR_NS,
    NS_PER_DAY,
    ROLE_SUM_FIELDS,
    DayRollup,
    FlaggedRow,
    History,
    RoleSums,
    StorageRejected,
    StorageUnavailable,
    WriteBatch,
    changed_days,
    new_change_token,
)
from app.storage.lineprotocol import LineProtocolError, escape_key
from app.telemetry.models import DeadLetter, Reading

log = logging.getLogger(__name__)

DEFAULT_CHUNK_LINES = 5000
_QUERY_CHUNK_ROWS = 10000
# A batched read sends its `;`-separated statements in POST bodies of at most this many
# statements / bytes: far below influxd's 10 MB form limit and common proxy body limits, and
# each request still replaces hundreds of round trips.
_STATEMENTS_PER_QUERY = 500
_QUERY_BODY_BYTES = 256 * 1024
# Devices one statement of a batched read selects by a regex alternation: measured on influxd
# 1.6 with 2,000 devices, 500 a statement is fastest, and an OR of `"device" = '...'` terms
# is 4-10x slower than the regex from 100 terms up. The regex is only built from ids of the
# MQTT alphabet (docs/gateway-contract.md), which need no escaping beyond `.`; other ids get a
# statement each.
_DEVICES_PER_STATEMENT = 500
_REGEX_SAFE_ID = re.compile(r"[A-Za-z0-9_.-]+")
# Auth failures, a missing database, throttling: the data is fine, the server (or its
# configuration) is not — keep it in the spool until someone fixes that, never quarantine it.
_RETRY_LATER_STATUSES = frozenset({401, 403, 404, 408, 425, 429})


def influxql_string(s: str) -> str:
    """A single-quoted InfluxQL string literal (only `\\\\`, `\\'`, `\\"`, `\\n` are escapes)."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def influxql_ident(s: str) -> str:
    """A double-quoted InfluxQL identifier."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _parse_int(s: str) -> int | float:
    # Go writes the float -0.0 as `-0`; plain json would read it back as the int 0.
    return -0.0 if s == "-0" else int(s)


_DECODER = json.JSONDecoder(parse_int=_parse_int)
_SPACE = re.compile(r"\s*")


def _iter_json_docs(text: str) -> Iterator[Any]:
    """The JSON documents of a body holding one or more of them back to back."""
    i = _SPACE.match(text).end()  # type: ignore[union-attr]
    while i < len(text):
        doc, i = _DECODER.raw_decode(text, i)
        yield doc
        i = _SPACE.match(text, i).end()  # type: ignore[union-attr]


@dataclass(slots=True)
class Series:
    """One series (or one chunk of it) of an InfluxQL result."""

    name: str
    columns: list[str]
    values: list[list[Any]]
    tags: dict[str, str] = field(default_factory=dict)


def _error_text(resp: httpx.Response) -> str:
    try:
        body = resp.json()
        if isinstance(body, dict):
            msg = body.get("error") or body.get("message")
            if msg:
                return str(msg)
    except (ValueError, UnicodeDecodeError):
        pass
    return resp.text.strip()[:2000] or resp.reason_phrase


def _raise_for_status(resp: httpx.Response) -> None:
    status = resp.status_code
    if 200 <= status < 300:
        return
    msg = f"HTTP {status} from {resp.request.url.path}: {_error_text(resp)}"
    if status >= 500 or status in _RETRY_LATER_STATUSES:
        raise StorageUnavailable(msg)
    # 400 includes influx 1.x's "partial write" (the good points were written): the rest will
    # fail identically on every retry.
    raise StorageRejected(msg)


def _statement_chunks(statements: Sequence[str]) -> Iterator[list[str]]:
    """`statements` in order, cut into request-sized lists (never empty, at least one each)."""
    chunk: list[str] = []
    size = 0
    for st in statements:
        if chunk and (len(chunk) >= _STATEMENTS_PER_QUERY or size + len(st) > _QUERY_BODY_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(st)
        size += len(st) + 1
    if chunk:
        yield chunk


CHANGE = "interval_change"


def change_marker_lines(intervals: Sequence[IntervalEnergy]) -> list[str]:
    """Line protocol of the change markers of one write (docs/storage.md, "Change markers"):
    one point per park and UTC day, at the day's start, field `w` = a fresh token."""
    token = new_change_token()
    return [
        f"{CHANGE},park={escape_key(park)} w={token}i {day * NS_PER_DAY}"
        for park, days in sorted(changed_days(intervals).items())
        for day in sorted(days)
    ]


ROLLUP = "day_rollup"
# InfluxDB 1.x caps a string field at 64 KiB: a payload is cut into fields p0, p1, ... this size
_ROLLUP_CHUNK = 60_000


def rollup_lines(park: str, kind: str, rollups: Sequence[DayRollup]) -> list[str]:
    """Line protocol of day rollups: one point per day, at the day's start; the payload in
    base64 (no escaping needed) over as many fields as it takes, `n` telling how many."""
    out: list[str] = []
    tags = f"{ROLLUP},kind={escape_key(kind)},park={escape_key(park)}"
    for r in rollups:
        text = base64.b64encode(r.payload).decode("ascii")
        parts = [text[i : i + _ROLLUP_CHUNK] for i in range(0, len(text), _ROLLUP_CHUNK)] or [""]
        fields = ",".join(f'p{i}="{p}"' for i, p in enumerate(parts))
        stamp = r.stamp.replace("\\", "\\\\").replace('"', '\\"')
        out.append(f'{tags} stamp="{stamp}",n={len(parts)}i,{fields} {r.day * NS_PER_DAY}')
    return out


def _series_tags(key: str) -> dict[str, str]:
    """Tags of a `SHOW SERIES` key (`measurement,tag=value,...`, line-protocol escaped)."""
    parts: list[str] = []
    cur: list[str] = []
    chars = iter(key)
    for ch in chars:
        if ch == "\\":
            cur.append(next(chars, ""))
        elif ch == ",":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    out: dict[str, str] = {}
    for part in parts[1:]:
        k, _, v = part.partition("=")
        out[k] = v
    return out


def _num(columns: Sequence[str], row: Sequence[Any], name: str) -> float:
    v = row[columns.index(name)] if name in columns else None
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else 0.0


class InfluxStorage:
    """Storage on InfluxDB via `/write` (line protocol), `/query` (InfluxQL) and `/ping`.

    Auth: `token` is sent as `Authorization: Token <t>` (2.x/3.x, and 1.x with a shared
    secret proxy); `username`/`password` as HTTP basic auth (1.x users; 2.x v1 compatibility
    users, or any name with the token as password).
    """

    def __init__(
        self,
        url: str,
        database: str = "lingtan",
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
        *,
        retention_policy: str | None = None,
        chunk_lines: int = DEFAULT_CHUNK_LINES,
        gzip: bool = False,
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.retention_policy = retention_policy
        self.chunk_lines = max(1, chunk_lines)
        self.gzip = gzip
        headers = {"User-Agent": "lingtan"}
        auth: httpx.Auth | None = None
        if token:
            headers["Authorization"] = f"Token {token}"
        elif username is not None:
            auth = httpx.BasicAuth(username, password or "")
        self._client = httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            auth=auth,
            timeout=timeout_s,
            # no TLS is spoken to an http:// server (redirects are not followed): loading the
            # CA bundle for it is ~50 ms of every start (docs/performance.md, "Collector
            # start-up"); any other scheme verifies as always
            verify=not self.url.lower().startswith("http://"),
        )

    # --- writes ---------------------------------------------------------------------------

    async def write(self, batch: WriteBatch) -> None:
        if batch.is_empty:
            return
        try:
            lines = schema.batch_lines(batch)
        except LineProtocolError as e:
            raise StorageRejected(f"unencodable point: {e}") from e
        await self.write_lines(lines)
        if batch.intervals:
            # Markers only once the intervals are written (their own request): a reader that
            # sees a marker can read the data behind it. A failure here fails the write, so
            # the caller retries (or spools) the whole batch, markers included.
            await self.write_lines(change_marker_lines(batch.intervals))

    async def write_lines(self, lines: Sequence[str]) -> None:
        """POST line protocol in chunks of `chunk_lines` (in order)."""
        for i in range(0, len(lines), self.chunk_lines):
            body = "\n".join(lines[i : i + self.chunk_lines]).encode("utf-8")
            await self._post_write(body)

    async def _post_write(self, body: bytes) -> None:
        params = {"db": self.database, "precision": "ns"}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.gzip:
            body = gzip_lib.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        try:
            resp = await self._client.post("/write", params=params, content=body, headers=headers)
        except httpx.TransportError as e:
            raise StorageUnavailable(f"write to {self.url} failed: {e!r}") from e
        _raise_for_status(resp)

    # --- admin ----------------------------------------------------------------------------

    async def ping(self) -> bool:
        try:
            resp = await self._client.get("/ping")
        except httpx.TransportError:
            return False
        return 200 <= resp.status_code < 300

    async def ensure_database(self) -> bool:
        """`CREATE DATABASE` (idempotent). False when the server does not support it (2.x/3.x
        manage databases as buckets/DBRP mappings); raises StorageUnavailable if unreachable."""
        q = f"CREATE DATABASE {influxql_ident(self.database)}"
        try:
            resp = await self._client.post("/query", data={"q": q})
        except httpx.TransportError as e:
            raise StorageUnavailable(f"query to {self.url} failed: {e!r}") from e
        if resp.status_code in (401, 403) or resp.status_code >= 500:
            _raise_for_status(resp)
        if resp.status_code >= 400:
            log.warning("CREATE DATABASE not supported by %s: %s", self.url, _error_text(resp))
            return False
        try:
            results = resp.json().get("results", [])
        except ValueError:
            return False
        errors = [r["error"] for r in results if isinstance(r, dict) and "error" in r]
        if errors:
            log.warning("CREATE DATABASE on %s: %s", self.url, "; ".join(errors))
            return False
        return True

    # --- queries --------------------------------------------------------------------------

    async def query(self, q: str) -> list[Series]:
        """Run one InfluxQL read statement; all series (chunks) of its result, in order.

        Uses chunked responses so results larger than a server's `max-row-limit` come back
        whole. A missing database reads as empty.
        """
        return await self._query(q, post=False)

    async def query_many(self, statements: Sequence[str]) -> list[Series]:
        """Run InfluxQL read statements, many `;`-separated ones per POSTed request; all
        series of all their results, in statement order. Rows carry no statement number:
        select the tags that tell the answers apart (`SELECT *` returns them as columns)."""
        out: list[Series] = []
        for chunk in _statement_chunks(statements):
            out.extend(await self._query(";".join(chunk), post=True))
        return out

    async def _query(self, q: str, *, post: bool) -> list[Series]:
        params = {
            "db": self.database,
            "epoch": "ns",
            "chunked": "true",
            "chunk_size": str(_QUERY_CHUNK_ROWS),
        }
        if self.retention_policy:
            params["rp"] = self.retention_policy
        out: list[Series] = []
        try:
            if post:
                # in the form body: a long statement list would overflow a URL
                resp = await self._client.post("/query", params=params, data={"q": q})
            else:
                resp = await self._client.get("/query", params={**params, "q": q})
        except httpx.TransportError as e:
            raise StorageUnavailable(f"query to {self.url} failed: {e!r}") from e
        _raise_for_status(resp)
        try:
            # Chunked answers are JSON documents one after another (1.x: one per line), but do
            # not split on lines: str.splitlines-style splitting would also cut at U+0085 and
            # U+2028, which influx leaves unescaped inside strings (field names...).
            no_db = False
            for doc in _iter_json_docs(resp.content.decode("utf-8")):
                no_db = self._collect(doc, out, no_db)
        except ValueError as e:
            raise StorageUnavailable(f"unexpected /query answer from {self.url}: {e}") from e
        return out

    @staticmethod
    def _collect(doc: dict[str, Any], out: list[Series], no_db: bool) -> bool:
        """Add the series of one answer document to `out`; True once the database was found
        missing (influxd then answers the statements after the first "not executed")."""
        if "error" in doc:
            raise StorageRejected(f"query failed: {doc['error']}")
        for res in doc.get("results", []):
            err = res.get("error")
            if err:
                if str(err).startswith("database not found"):
                    no_db = True
                    continue
                if no_db and err == "not executed":
                    continue
                raise StorageRejected(f"query failed: {err}")
            for s in res.get("series", []):
                out.append(
                    Series(
                        name=s.get("name", ""),
                        columns=list(s["columns"]),
                        values=s.get("values") or [],
                        tags=dict(s.get("tags") or {}),
                    )
                )
        return no_db

    @staticmethod
    def _where(conds: list[str], start_ns: int | None, end_ns: int | None) -> str:
        conds = list(conds)
        if start_ns is not None:
            conds.append(f"time >= {int(start_ns)}")
        if end_ns is not None:
            conds.append(f"time < {int(end_ns)}")
        return (" WHERE " + " AND ".join(conds)) if conds else ""

    @staticmethod
    def _tag_eq(tag: str, value: str) -> str:
        return f"{influxql_ident(tag)} = {influxql_string(value)}"

    async def readings(
        self, park: str, start_ns: int, end_ns: int, device: str | None = None
    ) -> list[Reading]:
        conds = [self._tag_eq("park", park)]
        if device is not None:
            conds.append(self._tag_eq("device", device))
        where = self._where(conds, start_ns, end_ns)
        q = f'SELECT * FROM "{schema.READING}"{where} ORDER BY time ASC'
        out: list[Reading] = []
        for s in await self.query(q):
            out.extend(schema.readings_from_rows(s.columns, s.values))
        return out

    async def intervals(
        self, park: str, start_ns: int, end_ns: int, device: str | None = None
    ) -> list[IntervalEnergy]:
        conds = [self._tag_eq("park", park)]
        if device is not None:
            conds.append(self._tag_eq("device", device))
        where = self._where(conds, start_ns, end_ns)
        q = f'SELECT * FROM "{schema.INTERVAL}"{where} ORDER BY time ASC'
        out: list[IntervalEnergy] = []
        for s in await self.query(q):
            out.extend(schema.intervals_from_rows(s.columns, s.values))
        return out

    async def deadletters(
        self,
        park: str | None,
        start_ns: int | None,
        end_ns: int | None,
        limit: int = 1000,
    ) -> list[DeadLetter]:
        conds: list[str] = []
        if park is not None:
            tag = schema.deadletter_park_tag(park)
            conds.append(self._tag_eq("park", tag))
            if tag == schema.INVALID_PARK:
                conds.append(f'"park_raw" = {influxql_string(park)}')
        where = self._where(conds, start_ns, end_ns)
        q = f'SELECT * FROM "{schema.DEADLETTER}"{where} ORDER BY time ASC LIMIT {int(limit)}'
        out: list[DeadLetter] = []
        for s in await self.query(q):
            out.extend(schema.deadletters_from_rows(s.columns, s.values))
        return out[:limit]

    def _devices_readings_q(
        self,
        park: str,
        devices: Sequence[str],
        start_ns: int | None,
        end_ns: int,
        *,
        last: bool = False,
    ) -> str:
        """Readings of `devices` (one, or several from `_device_groups`) in [start_ns, end_ns),
        a series per device, time-ordered; or only the latest of each (InfluxQL applies LIMIT
        per series)."""
        if len(devices) == 1:
            device = self._tag_eq("device", devices[0])
        else:
            alternatives = "|".join(d.replace(".", "\\.") for d in devices)
            device = f'"device" =~ /^(?:{alternatives})$/'
        where = self._where([self._tag_eq("park", park), device], start_ns, end_ns)
        order = "ORDER BY time DESC LIMIT 1" if last else "ORDER BY time ASC"
        return f'SELECT * FROM "{schema.READING}"{where} GROUP BY "device" {order}'

    @staticmethod
    def _device_groups(devices: Sequence[str]) -> list[list[str]]:
        """`devices` in order, cut into groups one statement can select by regex."""
        groups: list[list[str]] = []
        group: list[str] = []
        for d in devices:
            if not _REGEX_SAFE_ID.fullmatch(d):
                groups.append([d])
                continue
            if len(group) == _DEVICES_PER_STATEMENT:
                groups.append(group)
                group = []
            group.append(d)
        if group:
            groups.append(group)
        return groups

    async def last_readings(
        self, park: str, device: str, before_ns: int, limit: int
    ) -> list[Reading]:
        conds = [self._tag_eq("park", park), self._tag_eq("device", device)]
        where = self._where(conds, None, before_ns)
        q = f'SELECT * FROM "{schema.READING}"{where} ORDER BY time DESC LIMIT {int(limit)}'
        out: list[Reading] = []
        for s in await self.query(q):
            out.extend(schema.readings_from_rows(s.columns, s.values))
        out.sort(key=lambda r: r.ts_ns)
        return out

    async def histories(
        self, park: str, first_ns: Mapping[str, int], align: Callable[[int], int]
    ) -> dict[str, History]:
        preds = await self._predecessors(park, first_ns)
        starts = {d: align(preds[d].ts_ns) for d in first_ns if d in preds}
        # After a restart most predecessors share an interval or two: each such set of
        # devices is loaded by two statements per group, LIMIT 1 per series finding the
        # reading before the interval.
        by_start: dict[int, list[str]] = {}
        for device, start_ns in starts.items():
            by_start.setdefault(start_ns, []).append(device)
        statements: list[str] = []
        for start_ns, devices in by_start.items():
            for group in self._device_groups(devices):
                statements.append(self._devices_readings_q(park, group, None, start_ns, last=True))
                statements.append(self._devices_readings_q(park, group, start_ns, FAR_NS))
        found = await self._readings_by_device(statements) if statements else {}
        return {
            d: (starts[d], found.get(d, [])) if d in starts else (align(ts), [])
            for d, ts in first_ns.items()
        }

    async def _predecessors(self, park: str, first_ns: Mapping[str, int]) -> dict[str, Reading]:
        """Each device's latest reading before its `first_ns`, for those that have one."""
        # InfluxQL can neither OR time ranges nor join, so a group of devices is asked for
        # the latest reading before the group's latest bound. That is a device's answer
        # when it lies before the device's own bound, and no reading there means none before
        # it; only devices with stored readings in between (late data, a redelivered batch)
        # need a statement of their own. Sorting by bound keeps those few.
        ordered = sorted(first_ns, key=lambda d: first_ns[d])
        groups = self._device_groups(ordered)
        latest = await self._readings_by_device(
            [
                self._devices_readings_q(park, g, None, max(first_ns[d] for d in g), last=True)
                for g in groups
            ]
        )
        preds: dict[str, Reading] = {}
        retry: list[str] = []
        for device, ts in first_ns.items():
            found = latest.get(device)
            if found and found[-1].ts_ns < ts:
                preds[device] = found[-1]
            elif found:
                retry.append(device)
        if retry:
            again = await self._readings_by_device(
                [self._devices_readings_q(park, [d], None, first_ns[d], last=True) for d in retry]
            )
            preds.update((d, rs[-1]) for d, rs in again.items())
        return preds

    async def _readings_by_device(self, statements: Sequence[str]) -> dict[str, list[Reading]]:
        """The readings `statements` (grouped by device) select, per device, oldest first."""
        out: dict[str, list[Reading]] = {}
        for s in await self.query_many(statements):
            rows = schema.readings_from_rows(s.columns, s.values, s.tags)
            if rows:
                out.setdefault(rows[0].device, []).extend(rows)
        for rs in out.values():
            rs.sort(key=lambda r: r.ts_ns)
        return out

    async def close(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> InfluxStorage:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- aggregates and change markers (the balance's read path) --------------------------

    async def interval_series(self, park: str) -> set[tuple[str, str]]:
        q = f'SHOW SERIES FROM "{schema.INTERVAL}" WHERE {self._tag_eq("park", park)}'
        out: set[tuple[str, str]] = set()
        for s in await self.query(q):
            for row in s.values:
                tags = _series_tags(str(row[0]))
                out.add((tags.get("device", ""), tags.get("role", "")))
        return out

    async def interval_role_sums(
        self,
        park: str,
        start_ns: int,
        end_ns: int,
        roles: Sequence[str],
        *,
        interval_ns: int,
        fields: Sequence[str] = ROLE_SUM_FIELDS,
        estimated: bool = True,
    ) -> list[RoleSums]:
        """`Storage.interval_role_sums`, summed by influxd (`GROUP BY time, role`).

        Only `fields` are summed (the others read 0.0): influxd 1.x spends its time per
        series, window and aggregate, so a caller asking per group of roles for just the
        fields that group has is ~2× faster than one wide query."""
        if not roles:
            return []
        # every local interval boundary of a park lies on this UTC grid (offsets are whole
        # quarter hours), so windows of this width never straddle two intervals
        step_min = math.gcd(max(1, interval_ns // 60_000_000_000), 15)
        alt = "|".join(re.escape(r) for r in sorted(set(roles)))
        base = (
            f"{self._tag_eq('park', park)} AND time >= {int(start_ns)} AND time < {int(end_ns)}"
            f' AND "role" =~ /^({alt})$/'
        )
        group = f'GROUP BY time({step_min}m), "role" fill(none)'
        sums = ", ".join(f"sum({influxql_ident(f)}) AS {influxql_ident(f)}" for f in fields)
        queries = [
            f'SELECT {sums}, count("duration_s") AS "n" FROM "{schema.INTERVAL}"'
            f" WHERE {base} {group}"
        ]
        if estimated:
            queries.append(
                f'SELECT count("duration_s") AS "n" FROM "{schema.INTERVAL}"'
                f' WHERE {base} AND "estimated" = true {group}'
            )
        results = await asyncio.gather(*(self.query(q) for q in queries))
        totals = results[0]
        est: dict[tuple[int, str], int] = {}
        for s in results[1] if estimated else []:
            for row in s.values:
                est[(int(row[0]), s.tags.get("role", ""))] = int(_num(s.columns, row, "n"))
        out: list[RoleSums] = []
        for s in totals:
            role = s.tags.get("role", "")
            for row in s.values:
                t = int(row[0])
                out.append(
                    RoleSums(
                        t,
                        t + interval_ns,
                        role,
                        int(_num(s.columns, row, "n")),
                        est.get((t, role), 0),
                        {f: _num(s.columns, row, f) for f in ROLE_SUM_FIELDS},
                    )
                )
        out.sort(key=lambda r: (r.start_ns, r.role))
        return out

    async def flagged_intervals(
        self, park: str, start_ns: int, end_ns: int, roles: Sequence[str]
    ) -> list[FlaggedRow]:
        if not roles:
            return []
        alt = "|".join(re.escape(r) for r in sorted(set(roles)))
        q = (
            f'SELECT "device", "estimated", "flags" FROM "{schema.INTERVAL}"'
            f" WHERE {self._tag_eq('park', park)} AND time >= {int(start_ns)}"
            f' AND time < {int(end_ns)} AND "role" =~ /^({alt})$/'
            ' AND ("estimated" = true OR "flags" != \'\')'
        )
        out: list[FlaggedRow] = []
        for s in await self.query(q):
            cols = s.columns
            for row in s.values:
                rec = dict(zip(cols, row, strict=False))
                flags = rec.get("flags") or ""
                out.append(
                    (
                        int(rec["time"]),
                        str(rec.get("device") or s.tags.get("device", "")),
                        rec.get("estimated") is True,
                        tuple(str(flags).split(",")) if flags else (),
                    )
                )
        out.sort()
        return out

    async def interval_changes(self, park: str) -> dict[int, int]:
        q = f'SELECT "w" FROM "{CHANGE}" WHERE {self._tag_eq("park", park)}'
        out: dict[int, int] = {}
        for s in await self.query(q):
            for row in s.values:
                if isinstance(row[1], int):
                    out[int(row[0]) // NS_PER_DAY] = row[1]
        return out

    async def day_rollups(
        self, park: str, kind: str, first_day: int, last_day: int, *, payload: bool = True
    ) -> dict[int, DayRollup]:
        cols = "*" if payload else '"stamp"'
        q = (
            f'SELECT {cols} FROM "{ROLLUP}" WHERE {self._tag_eq("park", park)}'
            f" AND {self._tag_eq('kind', kind)}"
            f" AND time >= {first_day * NS_PER_DAY} AND time <= {last_day * NS_PER_DAY}"
        )
        out: dict[int, DayRollup] = {}
        for s in await self.query(q):
            for row in s.values:
                rec = dict(zip(s.columns, row, strict=False))
                stamp = rec.get("stamp")
                if not isinstance(stamp, str):
                    continue
                data = b""
                if payload:
                    n = rec.get("n")
                    parts = [rec.get(f"p{i}") for i in range(n if isinstance(n, int) else 0)]
                    if not parts or not all(isinstance(p, str) for p in parts):
                        continue  # a torn or foreign point: as if absent
                    data = base64.b64decode("".join(str(p) for p in parts))
                day = int(rec["time"]) // NS_PER_DAY
                out[day] = DayRollup(day, stamp, data)
        return out

    async def put_day_rollups(self, park: str, kind: str, rollups: Sequence[DayRollup]) -> None:
        if rollups:
            await self.write_lines(rollup_lines(park, kind, rollups))
