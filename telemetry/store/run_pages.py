"""A page of runs in one stable order (the sort column with missing values last, then the run id, both in the
sort's direction), found after a cursor by keyset or by offset, and a count that stops early.

Keyset pages read the (column, run_id) index from the cursor on, so a deep page costs what the first one does;
a page of one label sorts and seeks by the same values in the label's rows instead (`Sorting`, `run_labels`);
an offset page finds the sort key at its offset along the same index, then reads the page from that key
(still accepted: scripts use it). The order is split in two
index-ordered segments, runs with a value and then runs without one, because neither SQLite nor PostgreSQL can
read an index in "nulls last" order for both directions.
"""

from __future__ import annotations

from typing import Any

from peewee import Tuple

from ..filters import Cursor, Page
from .schema import RunRow

_COLUMNS = {"started_at_ms": RunRow.started_at_ms, "duration_ms": RunRow.duration_ms}
# (value column, run id column) to sort and seek by in place of the runs' own: columns of a joined table that hold
# the same values (None: the runs' columns).
Sorting = tuple[Any, Any] | None


def _column(sort: str, columns: Sorting = None) -> tuple[Any, Any, bool]:
    value, run_id = columns or (_COLUMNS[sort.lstrip("-")], RunRow.run_id)
    return value, run_id, sort.startswith("-")


def page_of_runs(query: Any, page: Page, columns: Sorting = None) -> tuple[list[Any], Cursor | None]:
    """The rows of `page` from the filtered `query`, and the cursor of the page after it (None: the last)."""
    wanted = page.limit + 1
    if page.cursor is not None:
        rows = _after(query, page.cursor, wanted, columns)
    elif page.offset == 0:
        rows = _first(query, page.sort, wanted, columns)
    else:
        rows = _at_offset(query, page.sort, page.offset, wanted, columns)
    if len(rows) <= page.limit:
        return rows, None
    rows = rows[:page.limit]
    last = rows[-1]
    return rows, Cursor(page.sort, getattr(last, _COLUMNS[page.sort.lstrip("-")].name), last.run_id)


def _first(query: Any, sort: str, wanted: int, columns: Sorting) -> list[Any]:
    """The first page in the two index-ordered segments as well: PostgreSQL reads no index in "nulls last"
    order, so one ORDER BY would sort every matching row (a dense search, an unfiltered list) to keep 50."""
    column, run_id, descending = _column(sort, columns)
    by_id = run_id.desc() if descending else run_id.asc()
    ordered = (column.desc(), by_id) if descending else (column.asc(), by_id)
    rows = list(query.where(column.is_null(False)).order_by(*ordered).limit(wanted))
    if len(rows) == wanted:
        return rows
    return rows + list(query.where(column.is_null()).order_by(by_id).limit(wanted - len(rows)))


def _at_offset(query: Any, sort: str, offset: int, wanted: int, columns: Sorting) -> list[Any]:
    """The rows from `offset` on, in the same two segments: the sort key of the row at `offset` is found along
    the (column, run_id) index alone (no row read for the rows skipped), then the page is read from that key on.
    One ORDER BY ... OFFSET in "nulls last" order made PostgreSQL sort every matching run (5.7 s at 1M runs)."""
    column, run_id, descending = _column(sort, columns)
    by_id = run_id.desc() if descending else run_id.asc()
    ordered = (column.desc(), by_id) if descending else (column.asc(), by_id)
    valued = query.where(column.is_null(False))
    start = list(valued.select(column, run_id).order_by(*ordered).offset(offset).limit(1).tuples())
    if start:
        key, first = Tuple(column, run_id), Tuple(*start[0])
        rows = list(valued.where(key <= first if descending else key >= first).order_by(*ordered).limit(wanted))
        if len(rows) == wanted:
            return rows
        return rows + list(query.where(column.is_null()).order_by(by_id).limit(wanted - len(rows)))
    into_missing = offset - valued.select(run_id).count()  # the page lies among the runs without a value
    return list(query.where(column.is_null()).order_by(by_id).limit(wanted).offset(max(0, into_missing)))


def _after(query: Any, cursor: Cursor, wanted: int, columns: Sorting) -> list[Any]:
    column, run_id, descending = _column(cursor.sort, columns)
    by_id = run_id.desc() if descending else run_id.asc()
    rows: list[Any] = []
    if cursor.value is not None:
        key, last = Tuple(column, run_id), Tuple(cursor.value, cursor.run_id)
        later = key < last if descending else key > last
        ordered = (column.desc(), by_id) if descending else (column.asc(), by_id)
        rows = list(query.where(column.is_null(False) & later).order_by(*ordered).limit(wanted))
        if len(rows) == wanted:
            return rows
        after_id = column.is_null()
    else:
        after_id = column.is_null() & (run_id < cursor.run_id if descending else run_id > cursor.run_id)
    return rows + list(query.where(after_id).order_by(by_id).limit(wanted - len(rows)))


def capped_count(query: Any, cap: int | None) -> tuple[int, bool]:
    """How many rows `query` matches, counting at most `cap` (None: all); True when it stopped at the cap."""
    if cap is None:
        return query.count(), False
    seen = query.limit(cap + 1).count()
    return min(seen, cap), seen > cap
