"""File exports (CSV, XLSX): format negotiation and a bounded-memory spooled XLSX writer."""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

from fastapi import Request
from fastapi.responses import StreamingResponse
from openpyxl import Workbook

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
#: Excel's hard limit is 1,048,576 rows per sheet, header included; beyond it the export
#: continues on a new sheet ("readings 2", ...) with the header repeated.
XLSX_MAX_DATA_ROWS = 1_048_575
_CHUNK_BYTES = 256 * 1024


def negotiate(request: Request, fmt: str | None) -> str:
    """`json`, `csv` or `xlsx`: the `format` query parameter wins over the Accept header."""
    if fmt is not None:
        return fmt
    accept = request.headers.get("accept", "").lower()
    if XLSX_MEDIA_TYPE in accept:
        return "xlsx"
    if "text/csv" in accept:
        return "csv"
    return "json"


def attachment(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


def xlsx_value(value: Any) -> Any:
    # openpyxl would write NaN/inf as text Excel refuses to open; keep them readable as text
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


class SpooledXlsx:
    """A write-only workbook fed row by row; only the current row is held in memory.

    openpyxl's write-only sheets stream each row's XML to a temp file and `finish()` zips
    them into an anonymous temp file (gone when closed), so memory does not grow with the
    row count. Strings are written inline (no shared-strings table that would grow).
    Synchronous (CPU and disk work): call it from a thread pool in async code.
    """

    def __init__(
        self, sheet: str, header: Sequence[str], *, max_data_rows: int | None = None
    ) -> None:
        self._wb = Workbook(write_only=True)
        self._sheet = sheet
        self._header = list(header)
        self._max_rows = max_data_rows or XLSX_MAX_DATA_ROWS
        self._sheets = 0
        self._rows_in_sheet = 0
        self.rows = 0
        self._ws: Any = None
        self._new_sheet()

    def _new_sheet(self) -> None:
        self._sheets += 1
        title = self._sheet if self._sheets == 1 else f"{self._sheet} {self._sheets}"
        self._ws = self._wb.create_sheet(title)
        self._ws.append(self._header)
        self._rows_in_sheet = 0

    @property
    def sheet_count(self) -> int:
        return self._sheets

    def append(self, rows: Iterable[Sequence[Any]]) -> None:
        for row in rows:
            if self._rows_in_sheet >= self._max_rows:
                self._new_sheet()
            self._ws.append([xlsx_value(v) for v in row])
            self._rows_in_sheet += 1
            self.rows += 1

    def add_sheet(self, title: str, rows: Iterable[Sequence[Any]]) -> None:
        """An extra sheet (e.g. "about": what the export covers), written in one go."""
        ws = self._wb.create_sheet(title)
        for row in rows:
            ws.append([xlsx_value(v) for v in row])

    def finish(self) -> IO[bytes]:
        """The finished .xlsx in an anonymous temp file, positioned at 0 (caller closes it)."""
        out = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the response, closed there
        try:
            self._wb.save(out)
        except BaseException:
            out.close()
            raise
        out.seek(0)
        return out

    def discard(self) -> None:
        """Drop an unfinished export and its per-sheet temp files."""
        for ws in self._wb.worksheets:
            with contextlib.suppress(Exception):
                ws.close()
            writer = getattr(ws, "_writer", None)
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.cleanup()


def _file_chunks(fh: IO[bytes]) -> Iterator[bytes]:
    try:
        while chunk := fh.read(_CHUNK_BYTES):
            yield chunk
    finally:
        fh.close()


def file_download(fh: IO[bytes], filename: str, media_type: str) -> StreamingResponse:
    """Stream an open temp file back in chunks and close it (also if the client leaves)."""
    fh.seek(0, 2)
    size = fh.tell()
    fh.seek(0)
    headers = {**attachment(filename), "Content-Length": str(size)}
    # a sync iterator: Starlette reads it in a thread pool, so disk reads do not block the loop
    return StreamingResponse(_file_chunks(fh), media_type=media_type, headers=headers)
