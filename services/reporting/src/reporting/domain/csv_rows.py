"""CSV rendering of report rows (pure helpers); paging is `servicekit.paging`'s."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def to_csv(rows: Iterable[Mapping[str, Any]], header: Sequence[str] | None = None) -> str:
    """One CSV line per row with a header of the row's scalar fields (lists/objects left out)."""
    rows = list(rows)
    if header is None:
        header = [k for k, v in rows[0].items() if is_scalar(v)] if rows else []
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if row.get(k) is None else _cell(row.get(k)) for k in header])
    return buf.getvalue()


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
