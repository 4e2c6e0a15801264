"""The label filter of runs (`label=`: a story title, scene or tag) and the table that answers it at a million runs.

What matches: a run whose story title or scene is exactly the label, or one of whose tags is the label with the
case folded as the database's LIKE folds it (SQLite: ASCII letters; PostgreSQL's ILIKE: `lower()`, every letter
its collation knows). Before migration 15 the filter was `story_title = l OR scene = l OR tags LIKE '%"l"%'`;
the same answer for every label, except the LIKE's accidents across the JSON text: `,` matched every run with two
tags, and `x` matched a tag `"x` (its escaped quote).

`run_labels` holds one row per run and folded label (`lower()` of its story title, scene and each tag, computed
by the database so that it folds as LIKE / ILIKE do), with `tagged` (a tag folds to it) and the run's
`started_at_ms`. The store writes a run's rows in the transaction that inserts or replaces the run (`add`) and
deletes them with the run (`_delete_runs`, and ON DELETE CASCADE); runs' labels and starts are never updated in
place. Migration 15 fills it from the runs there are (`backfill`).

The filter is then `folded = lower(l)`, and for a row a story title or scene folds to, the exact comparison on
the run (`tagged = 1 OR story_title = l OR scene = l`). Two forms:
- `condition`: `run_id IN (...)`, composable with any query (stats, exports, timelines, pages by duration);
- `joined`: the runs joined to the label's rows, for the newest (or oldest) page, cursor pages and the count:
  they walk the (folded, started_at_ms, run_id, tagged) index in order and stop after a page or at the count's
  cap, however many runs carry the label (`ORDER`: the columns `run_pages` sorts and seeks on); not with `q`
  (`joinable`).
Labels longer than `INDEXED_MAX` characters are not indexed (PostgreSQL's B-tree entries are bounded): a label
over `QUERY_MAX` takes the plain condition, which scans (lower() may change a text's length, hence the margin).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import peewee
from peewee import Database, Expression, PostgresqlDatabase, fn

from ..filters import RunFilters
from .schema import RunLabelRow, RunRow

INDEXED_MAX = 300  # characters; 4-byte characters folded stay within PostgreSQL's 2,704-byte index entry
QUERY_MAX = INDEXED_MAX // 2
_ROWS_PER_STATEMENT = 200  # 4 parameters each: within SQLite's old limit of 999
# The columns a page of one label is sorted and sought by (run_pages), in place of the runs' own.
ORDER = {"started_at_ms": (RunLabelRow.started_at_ms, RunLabelRow.run)}


def labels_of(story_title: str | None, scene: str | None, tags: str | None) -> dict[str, int]:
    """A run's labels as stored in `runs` (tags: their JSON text) -> 1 when a tag, else 0 (story title, scene)."""
    out: dict[str, int] = {}
    for value in (story_title, scene):
        if value and len(value) <= INDEXED_MAX:
            out.setdefault(value, 0)
    try:
        parsed = json.loads(tags) if tags else []
    except ValueError:
        parsed = []
    for tag in parsed if isinstance(parsed, list) else []:
        if isinstance(tag, str) and tag and len(tag) <= INDEXED_MAX:
            out[tag] = 1
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


def _exact(label: str) -> Expression:
    """Of the runs with a row of lower(label): those it matches (a tag folds to it, or a title or scene equals it)."""
    return (RunLabelRow.tagged == 1) | (RunRow.story_title == label) | (RunRow.scene == label)


def condition(label: str) -> Expression:
    """The runs `label` matches, as a condition on `runs` (a subquery of the label's rows)."""
    if not usable(label):
        return plain_condition(label)
    rows = RunLabelRow.select(RunLabelRow.run).where(RunLabelRow.folded == fn.lower(label))
    tagged = rows.where(RunLabelRow.tagged == 1)
    return RunRow.run_id.in_(rows) & ((RunRow.story_title == label) | (RunRow.scene == label)
                                      | RunRow.run_id.in_(tagged))


def joined(query: Any, label: str) -> Any:
    """`query` (a select of `runs`) joined to the label's rows (one per matching run): a page sorted by `ORDER`
    or a count walks the label's index. Only for a `usable` label."""
    on = RunLabelRow.run == RunRow.run_id
    return (query.join(RunLabelRow, on=on).switch(RunRow)
            .where((RunLabelRow.folded == fn.lower(label)) & _exact(label)))


def delete(run_ids: list[str]) -> None:
    for start in range(0, len(run_ids), _ROWS_PER_STATEMENT):
        RunLabelRow.delete().where(RunLabelRow.run.in_(run_ids[start:start + _ROWS_PER_STATEMENT])).execute()


def add(db: Database, rows: Iterable[dict[str, Any]]) -> None:
    """The label rows of runs just inserted (`runs` rows as dicts), none stored yet."""
    _insert(db, ((row["run_id"], row["started_at_ms"], labels_of(row["story_title"], row["scene"], row["tags"]))
                 for row in rows))


def _insert(db: Database, runs: Iterable[tuple[str, int | None, dict[str, int]]]) -> None:
    """Insert (run_id, started_at_ms, labels) as rows folded by the database: a statement groups its rows by
    (run_id, lower(label)), and a row folded like one stored is merged into it, so two labels of a run that
    fold alike (a title 'Saga', a tag 'SAGA') are one row."""
    pg = isinstance(db, PostgresqlDatabase)
    p = db.param
    merged = "GREATEST(run_labels.tagged, excluded.tagged)" if pg else "max(run_labels.tagged, excluded.tagged)"
    started = f"CAST(column4 AS {'BIGINT' if pg else 'INTEGER'})"

    def flush(values: list[tuple]) -> None:
        marks = ", ".join([f"({p}, {p}, {p}, {p})"] * len(values))
        sql = ('INSERT INTO "run_labels" ("run_id", "folded", "tagged", "started_at_ms") '
               f"SELECT column1, lower(column2), MAX(column3), MAX({started}) FROM (VALUES {marks}) AS v "
               "WHERE 1 = 1 GROUP BY column1, lower(column2) "
               f'ON CONFLICT ("run_id", "folded") DO UPDATE SET "tagged" = {merged}')
        with peewee.__exception_wrapper__:  # the driver's errors as peewee's (the recorder tells them apart)
            db.execute_sql(sql, [v for row in values for v in row])

    pending: list[tuple] = []
    for run_id, started_at_ms, labels in runs:
        for value, tagged in labels.items():
            pending.append((run_id, value, tagged, started_at_ms))
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
