"""`lingtan storage stats|prune|compact` (wired into `lingtan.cli` by `register`)."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from app.config import Settings, load_settings
from app.storage.base import StorageError
from app.storage.embedded import EmbeddedStorage, StoreStats, retention_cut_ns
from app.storage.factory import embedded_path

_FMT = argparse.RawDescriptionHelpFormatter


def register(subparsers: Any) -> None:
    """Add `storage stats`, `storage prune` and `storage compact` to the `lingtan` subparsers."""
    st = subparsers.add_parser(
        "storage",
        help="the time-series store: size on disk, retention of raw readings",
        description='Look after the time-series store (docs/storage.md, "Size on disk and'
        ' retention").',
        formatter_class=_FMT,
    )
    st.set_defaults(func=lambda _args: _print_help(st))
    sub = st.add_subparsers(dest="storage_command", metavar="SUBCOMMAND")

    stats = sub.add_parser(
        "stats",
        help="sizes per table, bytes per reading, date range, growth per day",
        description=(
            "Embedded store (no LINGTAN_INFLUX_URL): bytes on disk and rows per table (indexes\n"
            "counted with their table), raw readings and bytes per reading, their date range,\n"
            "and what the last 7 days added per day. Reads the whole file once: minutes on a\n"
            "store of many GB (progress on stderr).\n"
            "InfluxDB: what it answers cheaply: measurements, series cardinality, and the size\n"
            "of its data directory when --influx-data-dir is given (else n/a)."
        ),
        epilog="example:\n  lingtan storage stats --data-dir /var/lib/lingtan",
        formatter_class=_FMT,
    )
    _where(stats)
    stats.add_argument(
        "--influx-data-dir", type=Path, help="InfluxDB's data directory, when on this machine"
    )
    stats.set_defaults(func=_run_stats)

    prune = sub.add_parser(
        "prune",
        help="delete raw readings older than the retention (intervals are kept)",
        description=(
            "Delete the embedded store's raw readings older than --days (default\n"
            "LINGTAN_RAW_RETENTION_DAYS) or before --before, by whole UTC days. Interval\n"
            "energies, their sums, change markers and dead letters are never deleted, so\n"
            "balances and reports of the pruned period do not change. The collector applies\n"
            "LINGTAN_RAW_RETENTION_DAYS by itself once an hour; this runs it now."
        ),
        epilog="examples:\n  lingtan storage prune --days 400\n"
        "  lingtan storage prune --before 2026-01-01 --dry-run",
        formatter_class=_FMT,
    )
    _where(prune)
    when = prune.add_mutually_exclusive_group()
    when.add_argument("--days", type=float, help="keep this many days of raw readings")
    when.add_argument(
        "--before", type=date.fromisoformat, help="delete raw readings before this UTC date"
    )
    prune.add_argument("--dry-run", action="store_true", help="only say what would be deleted")
    prune.set_defaults(func=_run_prune)

    compact = sub.add_parser(
        "compact",
        help="compact every finished hour of raw readings now",
        description=(
            "Move every raw reading of a finished hour into its compact block now (the\n"
            "collector does it once a minute as it writes). Useful once after upgrading a\n"
            "store written by Lingtan before compaction, with the collector stopped or not.\n"
            "The file does not shrink by itself (SQLite reuses the freed pages for new data):\n"
            "--vacuum rewrites it without them; that needs as much free disk as the file and\n"
            "holds the write lock meanwhile (the collector spools until it is done)."
        ),
        formatter_class=_FMT,
    )
    _where(compact)
    compact.add_argument(
        "--vacuum", action="store_true", help="then rewrite the file without its free pages"
    )
    compact.set_defaults(func=_run_compact)


def _where(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, help="where the embedded store is (LINGTAN_DATA_DIR)")
    p.add_argument("--influx-url", help="InfluxDB URL (LINGTAN_INFLUX_URL)")
    p.add_argument("--influx-db", help="database name (LINGTAN_INFLUX_DB, default lingtan)")


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        k: v
        for k in ("data_dir", "influx_url", "influx_db")
        if (v := getattr(args, k, None)) is not None
    }
    return load_settings(**overrides)


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _open_embedded(settings: Settings) -> EmbeddedStorage | None:
    path = embedded_path(settings)
    if not path.exists():
        _err(f"lingtan: no embedded store at {path} (set --data-dir or LINGTAN_DATA_DIR)")
        return None
    return EmbeddedStorage(path)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} TB"  # pragma: no cover


def _day(ns: int | None) -> str:
    if ns is None:
        return "-"
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_stats(s: StoreStats) -> str:
    """The report of `lingtan storage stats` on the embedded store."""
    lines = [
        f"embedded store {s.path}: {_size(s.file_bytes)} on disk (file and WAL),"
        f" {_size(s.free_bytes)} of it free pages (reused first; `storage compact --vacuum`"
        " gives them back)",
        "",
    ]
    lines.append(f"{'table':<22} {'rows':>14} {'bytes on disk':>14}")
    for table in sorted(s.table_bytes, key=lambda t: -s.table_bytes[t]):
        rows = s.table_rows.get(table)
        rows_s = f"{rows:,}" if rows is not None else "-"
        lines.append(f"{table:<22} {rows_s:>14} {_size(s.table_bytes[table]):>14}")
    lines.append("")
    per = s.bytes_per_reading
    lines.append(
        f"raw readings: {s.readings:,} ({s.readings_compacted:,} compacted, "
        f"{s.readings_open:,} open), "
        + (f"{per:.1f} bytes per reading" if per is not None else "no readings")
    )
    lines.append(f"  from {_day(s.first_ns)} to {_day(s.last_ns)}")
    growth = s.readings_per_day * (per or 0.0)
    lines.append(
        f"last 7 days, per day: {s.readings_per_day:,.0f} readings (~{_size(growth)}),"
        f" {s.intervals_per_day:,.0f} interval rows"
    )
    return "\n".join(lines)


async def _run_stats(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings.influx_url:
        return await _influx_stats(settings, args.influx_data_dir)
    storage = _open_embedded(settings)
    if storage is None:
        return 1
    t0 = time.monotonic()
    async with storage:
        stats = await storage.stats(
            progress=lambda m: _err(f"… {m} ({time.monotonic() - t0:.0f} s)")
        )
    print(format_stats(stats))
    return 0


async def _influx_stats(settings: Settings, data_dir: Path | None) -> int:
    from app.storage.influx import InfluxStorage

    storage = InfluxStorage(
        settings.influx_url or "",
        database=settings.influx_db,
        token=settings.influx_token.get_secret_value() if settings.influx_token else None,
        username=settings.influx_user,
        password=settings.influx_password.get_secret_value() if settings.influx_password else None,
    )
    try:
        measurements = [
            str(v[0]) for s in await storage.query("SHOW MEASUREMENTS") for v in s.values
        ]
        card = await storage.query("SHOW SERIES CARDINALITY")
        series = sum(int(v[0]) for s in card for v in s.values)
    except StorageError as exc:
        _err(f"lingtan: InfluxDB at {settings.influx_url}: {exc}")
        return 1
    finally:
        await storage.close()
    disk = "n/a"
    if data_dir is not None and data_dir.is_dir():
        disk = _size(sum(f.stat().st_size for f in data_dir.rglob("*") if f.is_file()))
    print(f"InfluxDB {settings.influx_url}, database {settings.influx_db}")
    print(f"measurements: {', '.join(measurements) or '-'}")
    print(f"series cardinality: {series:,}")
    print(f"data directory on disk: {disk}")
    print("(rows, bytes per reading and growth need full scans on InfluxDB: not shown)")
    return 0


async def _run_prune(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings.influx_url:
        _err(
            "lingtan: storage prune works on the embedded store; on InfluxDB raw and interval"
            ' data share a database (docs/storage.md, "Size on disk and retention")'
        )
        return 2
    now = time.time_ns()
    if args.before is not None:
        cut = datetime(args.before.year, args.before.month, args.before.day, tzinfo=UTC)
        cut_ns = int(cut.timestamp()) * 1_000_000_000
    else:
        days = args.days if args.days is not None else settings.raw_retention_days
        if days is None:
            _err(
                "lingtan: no retention: give --days or --before, or set"
                " LINGTAN_RAW_RETENTION_DAYS (unset means keep raw readings forever)"
            )
            return 2
        if days <= 0:
            _err("lingtan: --days must be positive")
            return 2
        cut_ns = retention_cut_ns(days, now)
    storage = _open_embedded(settings)
    if storage is None:
        return 1
    async with storage:
        if args.dry_run:
            n = await storage.count_raw_before(cut_ns)
            print(f"would delete {n:,} raw readings before {_day(cut_ns)}")
            return 0
        _err(f"… deleting raw readings before {_day(cut_ns)}")
        n = await storage.prune_raw(cut_ns)
    print(f"deleted {n:,} raw readings before {_day(cut_ns)}; intervals kept")
    return 0


async def _run_compact(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings.influx_url:
        _err("lingtan: storage compact works on the embedded store only")
        return 2
    storage = _open_embedded(settings)
    if storage is None:
        return 1
    t0 = time.monotonic()
    async with storage:
        n = await storage.compact(
            progress=lambda k: _err(f"… {k:,} readings compacted ({time.monotonic() - t0:.0f} s)")
        )
        print(f"compacted {n:,} raw readings", flush=True)
        if args.vacuum:
            size = storage.path.stat().st_size
            _err(f"… vacuum: rewriting {storage.path} ({_size(size)})")
            await storage.vacuum()
            print(f"vacuumed: {_size(size)} → {_size(storage.path.stat().st_size)}")
    return 0
