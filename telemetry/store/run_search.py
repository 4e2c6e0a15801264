"""Text search of runs: which runs `q` matches (`/runs`, `/stats`, `report`, `export`), and the index that finds
them at a million runs.

What matches is `substring_condition`, the one definition: `q` as a substring of the workflow name, run id, error
message, failed node's class, story title, scene or tags (their JSON text), with `%` and `_` literal; LIKE on
SQLite (ASCII case folded), ILIKE on PostgreSQL (every case folded). The indexes only find the candidates faster,
so a result never depends on which way was taken:

- SQLite: `runs_search`, an FTS5 trigram table over those seven columns with `runs` as its external content, kept
  in step by triggers (migration 12) in the transaction of every insert, update and delete of a run. A `q` of
  3+ characters is first counted in the index, stopping at `RARE_MAX`: a rare one is looked up there (the
  candidates are checked with the substring condition: trigrams fold the case of every letter, LIKE only of
  ASCII ones); a common one walks the sort's index with the plain condition, where matches are dense, so a page
  stops early. Counts walk the index's matches joined to their runs (`narrow(counting=True)`), stopping at the
  cap: 10-30 ms at a million runs whatever the density. Since migration 16 the table's content is a view of the
  columns each followed by two end marks, so every character and every pair of characters of a column begins a
  trigram: a `q` of 1-2 characters is the OR of the trigrams that begin with it (`runs_search_terms`, the FTS
  vocabulary, lists them in order), looked up and counted the same way; past SHORT_TERMS_MAX of them it is common
  and takes the plain condition, as does one with a cased non-ASCII letter (LIKE and the index fold it apart).
- PostgreSQL: a pg_trgm GIN index on the seven columns joined with a separator no `q` contains (migration 12),
  queried with ILIKE over the same expression, which matches exactly when one of the columns does; the planner
  weighs the index against the sort's index by the expression's statistics (the first page is read in
  index order for that: `run_pages`). A `q` under 3 characters has no trigram: a second GIN index holds every
  1-2 character substring of the lower-cased expression (migration 16), queried with `@>` beside the ILIKE and
  weighed by the planner the same way. Without pg_trgm (it could not be created) the plain condition scans, and
  `/telemetry/health` says so.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from peewee import SQL, Column, Database, Expression, OperationalError, Table

from .migrations import (
    V12_PG_INDEX,
    V12_SEARCH_COLUMNS,
    V12_SEARCH_TABLE,
    V16_PG_SHORT_INDEX,
    V16_SEARCH_TERMS,
    v12_pg_expression,
    v16_pg_grams_expression,
)
from .schema import RunRow

SEARCHED_COLUMNS = V12_SEARCH_COLUMNS
SQLITE_TABLE = V12_SEARCH_TABLE  # the FTS5 table; its shadow tables are runs_search_data, _idx, _docsize, _config
PG_INDEX = V12_PG_INDEX
PG_SEPARATOR = "\x1f"  # joins the columns in the indexed expression; a `q` holding it takes the plain condition
TRIGRAM = 3
# Up to this many matches a `q` is looked up in the FTS index; beyond, matches are dense enough that a page of the
# sort's index finds its 50 soon (at a million runs: at most ~10,000 rows read for the first page).
RARE_MAX = 5_000
# A 1-2 character term is looked up as the trigrams that begin with it; past this many it is a common one (a letter
# or digit of most runs' ids and names), which the sort's index serves with the plain condition.
SHORT_TERMS_MAX = 1_024
DENSE_PROBE_RUNS = 2_000  # a 1-character term in a fifth of these newest runs is common (`_dense_among_newest`)
_PROBE_CACHE_SIZE = 256
_PROBE_TTL_S = 30.0
# PostgreSQL, a 1-2 character term: how often it occurs (ANALYZE's most common elements of the index, re-read every
# few minutes; a term not among them is rarer than all of them) decides the way. A page of one in more than
# PG_PAGE_DENSE of the runs walks the sort's index (at most ~50 / PG_PAGE_DENSE rows); a count of one in fewer than
# PG_COUNT_DENSE reads the index (its bitmap kept exact in PG_COUNT_WORK_MEM, else rows are checked by the
# function), of a denser one walks the runs until the cap.
PG_PAGE_DENSE = 0.005
PG_COUNT_DENSE = 0.2
PG_COUNT_WORK_MEM = "32MB"
_PG_STATS_TTL_S = 300.0


def substring_condition(q: str) -> Expression:
    """The runs `q` matches, as a condition on `runs` (peewee's `contains` escapes `%`, `_` and `\\`)."""
    columns = [getattr(RunRow, name) for name in SEARCHED_COLUMNS]
    condition = columns[0].contains(q)
    for column in columns[1:]:
        condition = condition | column.contains(q)
    return condition


pg_expression = v12_pg_expression  # the index is used only for exactly the indexed text


def fts_exact(q: str) -> bool:
    """Whether the index's matches of `q` are exactly the runs LIKE matches: an ASCII `q` (LIKE folds ASCII case
    as the trigrams do) without i or k, the only ASCII letters another character folds to in the index (U+0130,
    U+212A), and without the end mark."""
    return q.isascii() and not {"i", "k", "\x03"} & set(q.lower())


def _like_escaped(q: str) -> str:
    return q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def foldable(q: str) -> bool:
    """Whether lower-casing `q` here folds it as the index does (SQLite's trigrams, PostgreSQL's lower()): ASCII
    and caseless characters. Other short terms take the plain condition."""
    return all(c.isascii() or c.lower() == c.upper() for c in q)


def fts_phrase(q: str) -> str:
    """`q` as one FTS5 phrase (a string in double quotes, its quotes doubled): trigram substrings in order."""
    return '"' + q.replace('"', '""') + '"'


@dataclass(frozen=True)
class SearchIndexState:
    """Whether this database has its text search index, and if not, why (shown in `/telemetry/health`)."""

    kind: str  # "fts5_trigram" | "pg_trgm" | "none"
    reason: str | None = None
    short_terms: bool = False  # terms of 1-2 characters indexed too (migration 16)

    @property
    def available(self) -> bool:
        return self.kind != "none"

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.kind, "reason": self.reason, "short_terms": self.short_terms}


def detect(db: Database, dialect: str) -> SearchIndexState:
    """The search index the migrated schema has (migration 12 leaves it out where FTS5 or pg_trgm is missing)."""
    if dialect == "sqlite":
        found = db.execute_sql("SELECT 1 FROM sqlite_master WHERE name = ?", (SQLITE_TABLE,)).fetchone()
        if not found:
            return SearchIndexState("none", "this SQLite has no FTS5 trigram tokenizer (3.34+): text search scans")
        try:
            db.execute_sql(f"SELECT rowid FROM {SQLITE_TABLE} LIMIT 0")
        except OperationalError as exc:
            _set_aside(db)
            return SearchIndexState("none", f"this SQLite cannot read the file's search index ({exc}): text "
                                            "search scans; an SQLite with FTS5 rebuilds the index at its start")
        short = db.execute_sql("SELECT 1 FROM sqlite_master WHERE name = ?", (V16_SEARCH_TERMS,)).fetchone()
        return SearchIndexState("fts5_trigram", short_terms=bool(short))
    found = db.execute_sql("SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() AND indexname = %s",
                           (PG_INDEX,)).fetchone()
    if found:
        short = db.execute_sql("SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() AND indexname = %s",
                               (V16_PG_SHORT_INDEX,)).fetchone()
        return SearchIndexState("pg_trgm", short_terms=bool(short))
    return SearchIndexState("none", "the pg_trgm extension could not be created: text search scans "
                                    "(CREATE EXTENSION pg_trgm as a superuser, then DELETE FROM schema_version "
                                    "WHERE version IN (12, 16) and restart)")


def _set_aside(db: Database) -> None:
    """A file indexed by an SQLite with FTS5, opened by one without (another Python): the triggers would fail
    every write of a run, so they go, and migrations 12 and 16 are marked undone so that the next start on an
    SQLite with FTS5 makes them again and rebuilds the index from the runs written meanwhile."""
    with db.atomic():
        for trigger in ("insert", "delete", "update"):
            db.execute_sql(f"DROP TRIGGER IF EXISTS {SQLITE_TABLE}_{trigger}")
        db.execute_sql("DELETE FROM schema_version WHERE version IN (12, 16)")


class RunSearch:
    """The search conditions of one store's database (`Store.search`), and its cache of how many runs a `q`
    matches in the FTS index (a page and its count ask twice; a typed query is asked again soon)."""

    def __init__(self, db: Database, dialect: str, state: SearchIndexState) -> None:
        self.db = db
        self.dialect = dialect
        self.state = state
        self._probes: OrderedDict[Any, tuple[float, int]] = OrderedDict()
        self._pg_stats: tuple[float, dict[str, float] | None] | None = None
        self._lock = threading.Lock()

    def narrow(self, query: Any, q: str, counting: bool = False) -> Any:
        """`query` (a select of `runs`) narrowed to the runs `q` matches, in the form that reads fewest rows for
        a page in the sort's order, or with `counting`, for counting the matches in any order: on SQLite that
        one always walks the index's matches, each joined to its run by rowid, and stops at the count's cap."""
        if self.dialect == "postgresql":
            return query.where(self._pg_condition(q, counting))
        match = self.fts_query(q)
        if match is None:
            return query.where(substring_condition(q))
        if match == "":
            return query.where(SQL("1 = 0"))  # no trigram begins with the short term: no run holds it
        # Where the index's matches are exactly LIKE's, they are not checked again (each check reads its run).
        checked = SQL("1 = 1") if fts_exact(q) else substring_condition(q)
        if counting:
            index = Table(SQLITE_TABLE)
            on = Column(index, "rowid") == Column(RunRow._meta.table, "rowid")
            matched = Expression(Column(index, SQLITE_TABLE), "MATCH", match)
            return query.join(index, on=on).where(matched & checked)
        if self.fts_matches(match) <= RARE_MAX:
            # `rowid` unqualified: the runs row of the select this condition is in, whatever peewee calls it.
            in_index = SQL(f"rowid IN (SELECT rowid FROM {SQLITE_TABLE} WHERE {SQLITE_TABLE} MATCH ?)", [match])
            return query.where(in_index & checked)
        return query.where(substring_condition(q))

    def count_alone(self, q: str, cap: int | None) -> tuple[int, bool] | None:
        """The count of the runs `q` matches when it is the only filter, from the FTS index alone where its
        matches are exactly LIKE's (`fts_exact`): no run is read (a count that joined 10,000 runs took ~30 ms at
        a million). None where it cannot be counted so; `cap` as in run_pages.capped_count."""
        if self.dialect != "sqlite" or not fts_exact(q):
            return None
        match = self.fts_query(q)
        if match is None:
            return None
        if match == "":
            return 0, False
        limit = "" if cap is None else f" LIMIT {int(cap) + 1}"
        (seen,) = self.db.execute_sql(
            f"SELECT COUNT(*) FROM (SELECT rowid FROM {SQLITE_TABLE} WHERE {SQLITE_TABLE} MATCH ?{limit})",
            (match,)).fetchone()
        return (seen, False) if cap is None else (min(seen, cap), seen > cap)

    def fts_query(self, q: str) -> str | None:
        """The FTS5 query whose matches hold every run `q` matches (more, where the index folds more case than
        LIKE): `q` as a phrase; a 1-2 character `q` as the trigrams that begin with it, OR'd ("" where there are
        none). None where the plain condition is the better way or the only one."""
        if not self.state.available:
            return None
        if len(q) >= TRIGRAM:
            return fts_phrase(q)
        if not q or not self.state.short_terms or not foldable(q) or len(q) == 1 and self._dense_among_newest(q):
            return None
        terms = self.terms_beginning(q.lower())
        if len(terms) > SHORT_TERMS_MAX:
            return None
        return " OR ".join(fts_phrase(term) for term in terms)

    def _dense_among_newest(self, q: str) -> bool:
        """Whether a 1-character `q` is in a fifth of the newest runs or more: a digit or letter of most run ids,
        whose page and capped count the plain condition finds within a few thousand runs, and whose hundreds of
        trigrams would take longer to list (each one's runs are read to count them) than that."""
        columns = ", ".join(SEARCHED_COLUMNS)
        found = self._cached(("newest", q), lambda: self.db.execute_sql(
            f"SELECT COUNT(*) FROM (SELECT {columns} FROM runs ORDER BY rowid DESC LIMIT {DENSE_PROBE_RUNS}) AS n "
            "WHERE " + " OR ".join(f"n.{c} LIKE ? ESCAPE '\\'" for c in SEARCHED_COLUMNS),
            [f"%{_like_escaped(q)}%"] * len(SEARCHED_COLUMNS)).fetchone()[0])
        return found >= DENSE_PROBE_RUNS // 5

    def terms_beginning(self, prefix: str) -> list[str]:
        """The index's trigrams that begin with `prefix` (up to SHORT_TERMS_MAX + 1 of them). Every column is
        indexed with two end marks after it (migration 16), so each of its characters begins a trigram."""
        rows = self.db.execute_sql(
            f"SELECT term FROM {V16_SEARCH_TERMS} WHERE term >= ? AND term < ? LIMIT ?",
            (prefix, prefix + "\U0010ffff", SHORT_TERMS_MAX + 1)).fetchall()
        return [term for (term,) in rows if term.startswith(prefix)]

    def fts_matches(self, match: str) -> int:
        """How many runs the FTS query `match` finds, counted up to RARE_MAX + 1 (cached for a while)."""
        return self._cached(match, lambda: self.db.execute_sql(
            f"SELECT COUNT(*) FROM (SELECT rowid FROM {SQLITE_TABLE} WHERE {SQLITE_TABLE} MATCH ? LIMIT ?)",
            (match, RARE_MAX + 1)).fetchone()[0])

    def _cached(self, key: Any, count: Callable[[], int]) -> int:
        """A count that only picks a way (never an answer), kept for _PROBE_TTL_S."""
        now = time.monotonic()
        with self._lock:
            hit = self._probes.get(key)
            if hit is not None and now - hit[0] < _PROBE_TTL_S:
                self._probes.move_to_end(key)
                return hit[1]
        value = count()
        with self._lock:
            self._probes[key] = (now, value)
            self._probes.move_to_end(key)
            while len(self._probes) > _PROBE_CACHE_SIZE:
                self._probes.popitem(last=False)
        return value

    def _pg_condition(self, q: str, counting: bool = False) -> Expression:
        if not self.state.available or PG_SEPARATOR in q or not q:
            return substring_condition(q)
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        condition = SQL(f"{pg_expression()} ILIKE %s", [f"%{escaped}%"])
        if len(q) >= TRIGRAM:
            return condition
        # Under 3 characters pg_trgm has no trigram to look up (it would read its whole index): the index of
        # every 1-2 character substring (migration 16), for a term rare enough. Its `@>` is the ILIKE itself for
        # such a term (lower(text) holds lower(q) as one of its substrings); a page keeps the ILIKE beside it,
        # without which the planner walks the sort's index calling the substring function on every run.
        if not self.state.short_terms or not foldable(q):
            return substring_condition(q)
        if self.pg_frequency(q.lower()) >= (PG_COUNT_DENSE if counting else PG_PAGE_DENSE):
            return condition
        indexed = SQL(f"{v16_pg_grams_expression()} @> ARRAY[lower(%s)]", [q])
        return indexed if counting else indexed & condition

    def count_scope(self, q: str | None) -> contextlib.AbstractContextManager[Any]:
        """Around a count of `q`: on PostgreSQL, a short term counted through its index gets the memory that keeps
        the index's bitmap exact (a lossy one rechecks each row with the substring function: seconds)."""
        if self.dialect != "postgresql" or not q or len(q) >= TRIGRAM or not self.state.short_terms:
            return contextlib.nullcontext()
        return self._work_mem()

    @contextlib.contextmanager
    def _work_mem(self) -> Iterator[None]:
        with self.db.atomic():
            self.db.execute_sql(f"SET LOCAL work_mem = '{PG_COUNT_WORK_MEM}'")
            yield

    def pg_frequency(self, gram: str) -> float:
        """The share of runs whose text holds `gram`, by ANALYZE's statistics of the short-term index: 0 for one
        outside its most common elements; 1 (walk, never the index) where there are no statistics yet."""
        now = time.monotonic()
        with self._lock:
            if self._pg_stats is None or now - self._pg_stats[0] > _PG_STATS_TTL_S:
                self._pg_stats = (now, None)
                stale = True
            else:
                stale = False
        if stale:
            rows = self.db.execute_sql(
                "SELECT s.most_common_elems::text::text[], s.most_common_elem_freqs FROM pg_stats s "
                "WHERE s.schemaname = current_schema() AND s.tablename = %s", (V16_PG_SHORT_INDEX,)).fetchall()
            known = dict(zip(rows[0][0], rows[0][1], strict=False)) if rows and rows[0][0] else None
            with self._lock:
                self._pg_stats = (now, known)
        with self._lock:
            known = self._pg_stats[1] if self._pg_stats else None
        return 1.0 if known is None else known.get(gram, 0.0)
