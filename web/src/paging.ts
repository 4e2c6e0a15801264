/**
 * Paging and sorting state of the runs table. The server pages and sorts (`limit`, `sort`, and `cursor` or
 * `offset`), so the panel only ever holds one page: 1,000,000 runs cost the same as 50. Next follows the server's
 * `next_cursor` (a keyset page: page 10,000 costs what page 1 does) and remembers the cursors it came through, so
 * Prev goes back the same way; `offset` is kept for the "from–to" the pager shows.
 */

import type { RunSummary } from "./types";

export type SortColumn = "started_at_ms" | "duration_ms";
export type SortKey = SortColumn | `-${SortColumn}`;

export const DEFAULT_SORT: SortKey = "-started_at_ms";
export const PAGE_SIZES = [25, 50, 100, 200] as const;
export const MAX_LIMIT = 500;

export interface TableState {
  sort: SortKey;
  limit: number;
  offset: number;
  /** The cursor this page was asked with (null: the first page, or an offset page). */
  cursor?: string | null;
  /** The cursors of the pages before this one, oldest first (Prev pops). */
  back?: (string | null)[];
}

export function defaultTableState(limit = 50): TableState {
  return { sort: DEFAULT_SORT, limit: clampLimit(limit), offset: 0, cursor: null, back: [] };
}

/** The same table from its first page (a new filter, sort or page size). */
export function firstPage(state: TableState): TableState {
  return { ...state, offset: 0, cursor: null, back: [] };
}

export function clampLimit(limit: number): number {
  if (!Number.isFinite(limit)) return 50;
  return Math.min(MAX_LIMIT, Math.max(1, Math.round(limit)));
}

export function isSortKey(value: unknown): value is SortKey {
  return (
    value === "started_at_ms" || value === "-started_at_ms" || value === "duration_ms" || value === "-duration_ms"
  );
}

/** The column a sort key orders by and its direction. */
export function sortOf(sort: SortKey): { column: SortColumn; descending: boolean } {
  return sort.startsWith("-")
    ? { column: sort.slice(1) as SortColumn, descending: true }
    : { column: sort as SortColumn, descending: false };
}

/** Clicking a column header: a new column sorts descending first (newest, slowest), the same column flips.
 * Paging restarts at the first page. */
export function toggleSort(state: TableState, column: SortColumn): TableState {
  const current = sortOf(state.sort);
  const sort: SortKey = current.column === column && current.descending ? column : `-${column}`;
  return firstPage({ ...state, sort });
}

/** The `aria-sort` value of a column header. */
export function ariaSort(state: TableState, column: SortColumn): "ascending" | "descending" | "none" {
  const current = sortOf(state.sort);
  if (current.column !== column) return "none";
  return current.descending ? "descending" : "ascending";
}

export function tableParams(state: TableState): URLSearchParams {
  if (state.cursor) return new URLSearchParams({ sort: state.sort, limit: String(state.limit), cursor: state.cursor });
  return new URLSearchParams({ sort: state.sort, limit: String(state.limit), offset: String(state.offset) });
}

/** What the server said about the page on screen beyond its rows. */
export interface PageMeta {
  /** `total` stopped at the server's cap: at least this many match. */
  totalCapped?: boolean;
  /** The cursor of the next page; null on the last; undefined from a server without cursors. */
  nextCursor?: string | null;
}

export interface PageInfo {
  from: number;
  to: number;
  total: number;
  totalCapped: boolean;
  page: number;
  pages: number;
  hasPrev: boolean;
  hasNext: boolean;
}

/** "from–to of total" and whether there is a page before and after. `from` is 1-based; 0 when empty. */
export function pageInfo(state: TableState, rowsOnPage: number, total: number, meta: PageMeta = {}): PageInfo {
  const from = rowsOnPage === 0 ? 0 : state.offset + 1;
  const to = state.offset + rowsOnPage;
  const pages = Math.max(1, Math.ceil(total / state.limit));
  const page = Math.min(pages, Math.floor(state.offset / state.limit) + 1);
  const hasNext = meta.nextCursor !== undefined ? meta.nextCursor !== null : state.offset + state.limit < total;
  return { from, to, total, totalCapped: meta.totalCapped === true, page, pages, hasPrev: state.offset > 0, hasNext };
}

export function nextPage(state: TableState, total: number, nextCursor?: string | null): TableState {
  if (nextCursor) {
    return { ...state, offset: state.offset + state.limit, cursor: nextCursor, back: [...(state.back ?? []), state.cursor ?? null] };
  }
  if (state.offset + state.limit >= total) return state;
  return { ...state, offset: state.offset + state.limit, cursor: null, back: [] };
}

export function prevPage(state: TableState): TableState {
  const back = state.back ?? [];
  if (back.length > 0 && state.cursor) {
    return { ...state, offset: Math.max(0, state.offset - state.limit), cursor: back[back.length - 1], back: back.slice(0, -1) };
  }
  return { ...state, offset: Math.max(0, state.offset - state.limit), cursor: null, back: [] };
}

export function withLimit(state: TableState, limit: number): TableState {
  return firstPage({ ...state, limit: clampLimit(limit) });
}

/**
 * Puts a run pushed over the websocket into the page on screen. A run already on the page is replaced in place
 * (a `running` row becoming `success`); a new run is added at the top only where the server would put it there:
 * the first page of a newest-first table. Answers the new rows and total, or `null` when the page is unchanged
 * (then the panel only notes that newer data exists).
 */
export function mergeLiveRun(
  rows: readonly RunSummary[],
  total: number,
  state: TableState,
  run: RunSummary,
  matches: boolean,
): { rows: RunSummary[]; total: number } | null {
  const index = rows.findIndex((r) => r.run_id === run.run_id);
  if (index >= 0) {
    if (!matches) {
      const next = rows.slice();
      next.splice(index, 1);
      return { rows: next, total: Math.max(0, total - 1) };
    }
    const next = rows.slice();
    next[index] = run;
    return { rows: next, total };
  }
  if (!matches) return null;
  if (state.offset !== 0 || state.sort !== DEFAULT_SORT) return null;
  const next = [run, ...rows].slice(0, state.limit);
  return { rows: next, total: total + 1 };
}
