"""The label filter of runs (`label=`: a story title, scene or tag) and the table that answers it at a million runs.

What matches: a run whose story title or scene is exactly the label, or one of whose tags is the label with the
case folded as the database's LIKE folds it (SQLite: ASCII letters; PostgreSQL's ILIKE: `lower()`, every letter
its collation knows). Before migration 15 the filter was `story_title = l OR scene = l OR tags LIKE '%"l"%'`;
the same answer for every label, except the LIKE's accidents across the JSON text: `,` matched every run with two
tags, and `x` matched a tag `"x` (its escaped quote).

`run_labels` holds one row per folded label and run (`lower()` of its story title, scene and each tag, computed
by the database so that it folds as LIKE / ILIKE do), with `tagged` (a tag folds to it), the run's `title` and
`scene` where they fold to it, and the run's `started_at_ms`: a row says by itself whether a label matches. The
store writes a run's rows in the transaction that inserts or replaces the run (`add`) and deletes them with the
run (`_delete_runs`, and ON DELETE CASCADE); runs' labels and starts are never updated in place. Migration 15
fills it from the runs there are (`backfill`).

The filter is then `folded = lower(l) AND (tagged = 1 OR title = l OR scene = l)`, in two forms:
- `condition`: `run_id IN (...)`, composable with any query (stats, exports, timelines, pages by duration). For a
  page in another order SQLite would read every run of a dense label by its key and sort them all: past RARE_MAX
  runs the page walks its own order and probes the label's key per run instead (`dense`, `condition(scan=True)`,
  an EXISTS); PostgreSQL weighs that itself;
- `joined`: the runs joined to the label's rows, for pages in start order (first, cursor, offset) and the count:
  a page walks the (folded, started_at_ms, run_id) index in order (`ORDER`: the columns `run_pages` sorts and
  seeks on), a count the table's key (folded, run_id), and both stop after a page or at the count's cap, however
  many runs carry the label. Not with `q` (`joinable`).
Labels longer than `INDEXED_MAX` characters are not indexed (PostgreSQL's B-tree entries are bounded): a label
over `QUERY_MAX` takes the plain condition, which scans (lower() may change a text's length, hence the margin).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import peewee
from peewee import SQL, Database, Expression, PostgresqlDatabase, fn

from ..filters import RunFilters
from .schema import RunLabelRow, RunRow

INDEXED_MAX = 300  # characters; 4-byte characters folded stay within PostgreSQL's 2,704-byte index entry
QUERY_MAX = INDEXED_MAX // 2
RARE_MAX = 5_000  # runs; a label with more is read along the query's own order on SQLite (`condition`)
_ROWS_PER_STATEMENT = 150  # 6 parameters each: within SQLite's old limit of 999
# The columns a page of one label is sorted and sought by (run_pages), in place of the runs' own.
ORDER = {"started_at_ms": (RunLabelRow.started_at_ms, RunLabelRow.run)}


def labels_of(story_title: str | None, scene: str | None, tags: str | None) -> dict[str, tuple[int, int, int]]:
    """A run's labels as stored in `runs` (tags: their JSON text) -> (a tag, its story title, its scene), each 0/1."""
    out: dict[str, tuple[int, int, int]] = {}

    def put(value: Any, kind: int) -> None:
        if isinstance(value, str) and value and len(value) <= INDEXED_MAX:
            flags = list(out.get(value, (0, 0, 0)))
            flags[kind] = 1
            out[value] = (flags[0], flags[1], flags[2])

    put(story_title, 1)
    put(scene, 2)
    try:
        parsed = json.loads(tags) if tags else []
    except ValueError:
        parsed = []
    for tag in parsed if isinstance(parsed, list) else []:
        put(tag, 0)
    return out


def usable(label: str | None) -> bool:
    return bool(label) and len(label) <= QUERY_MAX  # type: ignore[arg-type]


def joinable(filters: RunFilters) -> bool:
    """Whether the `joined` form can answer `filters`: a usable label, and no `q` (the search's SQL names the
    runs' columns unqualified, as its index does; `run_id` would be ambiguous in the join)."""
    return usable(filters.label) and not filters.q


def plain_condition(label: str) -> Expression:
    """The filter as it was before the table (labels too long for the index): it scans."""
    tag_json = json.dumps(label, ensure_ascii=False)
    return (RunRow.story_title == label) | (RunRow.scene == label) | RunRow.tags.contains(tag_json)


def _matching(label: str) -> Expression:
    """The label's rows that match it: a tag folds to it, or the run's title or scene is it."""
    return ((RunLabelRow.folded == fn.lower(label))
            & ((RunLabelRow.tagged == 1) | (RunLabelRow.title == label) | (RunLabelRow.scene == label)))


def dense(label: str) -> bool:
    """Whether more than RARE_MAX runs have a row of `label` (counted in its key's range, at most that many)."""
    rows = RunLabelRow.select(RunLabelRow.run).where(RunLabelRow.folded == fn.lower(label)).limit(RARE_MAX + 1)
    return rows.count() > RARE_MAX


def condition(label: str, scan: bool = False) -> Expression:
    """The runs `label` matches, as a condition on `runs`: the run ids of the label's rows, which SQLite reads by
    their key and then sorts, or with `scan` (a page of a `dense` label on SQLite) a probe of the label's key per
    run, so the query reads runs in its own order and stops after a page, as the plain condition did."""
    if not usable(label):
        return plain_condition(label)
    if scan:
        return fn.EXISTS(RunLabelRow.select(SQL("1")).where((RunLabelRow.run == RunRow.run_id) & _matching(label)))
    return RunRow.run_id.in_(RunLabelRow.select(RunLabelRow.run).where(_matching(label)))


def joined(query: Any, label: str) -> Any:
    """`query` (a select of `runs`) joined to the label's rows (one per matching run): a page sorted by `ORDER`
    or a count walks the label's index. Only for a `usable` label."""
    return query.join(RunLabelRow, on=RunLabelRow.run == RunRow.run_id).switch(RunRow).where(_matching(label))


def delete(run_ids: list[str]) -> None:
    for start in range(0, len(run_ids), _ROWS_PER_STATEMENT):
        RunLabelRow.delete().where(RunLabelRow.run.in_(run_ids[start:start + _ROWS_PER_STATEMENT])).execute()


def add(db: Database, rows: Iterable[dict[str, Any]]) -> None:
    """The label rows of runs just inserted (`runs` rows as dicts), none stored yet."""
    _insert(db, ((row["run_id"], row["started_at_ms"], labels_of(row["story_title"], row["scene"], row["tags"]))
                 for row in rows))


def _insert(db: Database, runs: Iterable[tuple[str, int | None, dict[str, tuple[int, int, int]]]]) -> None:
    """Insert (run_id, started_at_ms, labels) as rows folded by the database: a statement groups its rows by
    (run_id, lower(label)), and a row folded like one stored is merged into it, so labels of a run that fold
    alike (a title 'Saga', a tag 'SAGA') are one row."""
    pg = isinstance(db, PostgresqlDatabase)
    p = db.param
    tagged = "GREATEST(run_labels.tagged, excluded.tagged)" if pg else "max(run_labels.tagged, excluded.tagged)"
    started = f"CAST(column4 AS {'BIGINT' if pg else 'INTEGER'})"

    def flush(values: list[tuple]) -> None:
        marks = ", ".join([f"({p}, {p}, {p}, {p}, {p}, {p})"] * len(values))
        sql = ('INSERT INTO "run_labels" ("folded", "run_id", "tagged", "title", "scene", "started_at_ms") '
               "SELECT lower(column2), column1, MAX(column3), MAX(CASE WHEN column5 = 1 THEN column2 END), "
               f"MAX(CASE WHEN column6 = 1 THEN column2 END), MAX({started}) FROM (VALUES {marks}) AS v "
               "WHERE 1 = 1 GROUP BY lower(column2), column1 "
               f'ON CONFLICT ("folded", "run_id") DO UPDATE SET "tagged" = {tagged}, '
               '"title" = COALESCE(run_labels.title, excluded.title), '
               '"scene" = COALESCE(run_labels.scene, excluded.scene)')
        with peewee.__exception_wrapper__:  # the driver's errors as peewee's (the recorder tells them apart)
            db.execute_sql(sql, [v for row in values for v in row])

    pending: list[tuple] = []
    for run_id, started_at_ms, labels in runs:
        for value, (tag, title, scene) in labels.items():
            pending.append((run_id, value, tag, started_at_ms, title, scene))
            if len(pending) >= _ROWS_PER_STATEMENT:
                flush(pending)
                pending = []
    if pending:
        flush(pending)


def backfill(db: Database, chunk: int = 5000) -> None:
    """The rows of every stored run with a label (migration 15), in chunks of runs in storage order (SQLite's
    rowid; PostgreSQL's run_id)."""
    key = '"run_id"' if isinstance(db, PostgresqlDatabase) else "rowid"
    select = (f'SELECT {key}, "run_id", "started_at_ms", "story_title", "scene", "tags" FROM "runs" '
              'WHERE ("story_title" IS NOT NULL OR "scene" IS NOT NULL OR "tags" IS NOT NULL)')
    order = f"ORDER BY {key} LIMIT {int(chunk)}"
    rows = db.execute_sql(f"{select} {order}").fetchall()
    while rows:
        _insert(db, ((run_id, started, labels_of(title, scene, tags)) for _, run_id, started, title, scene, tags
                     in rows))
        rows = db.execute_sql(f"{select} AND {key} > {db.param} {order}", (rows[-1][0],)).fetchall()
