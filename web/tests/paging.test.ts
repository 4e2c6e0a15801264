import { describe, expect, it } from "vitest";
import {
  ariaSort,
  clampLimit,
  defaultTableState,
  mergeLiveRun,
  nextPage,
  pageInfo,
  prevPage,
  tableParams,
  toggleSort,
  withLimit,
} from "../src/paging";
import type { RunSummary } from "../src/types";

const run = (id: string, status: RunSummary["status"] = "success"): RunSummary => ({ run_id: id, status });

describe("sorting", () => {
  it("sorts a new column descending first and flips the same column", () => {
    let s = defaultTableState();
    expect(s.sort).toBe("-started_at_ms");
    s = toggleSort(s, "started_at_ms");
    expect(s.sort).toBe("started_at_ms");
    s = toggleSort(s, "started_at_ms");
    expect(s.sort).toBe("-started_at_ms");
    s = toggleSort({ ...s, offset: 100 }, "duration_ms");
    expect(s).toMatchObject({ sort: "-duration_ms", offset: 0 });
  });
  it("reports aria-sort", () => {
    const s = defaultTableState();
    expect(ariaSort(s, "started_at_ms")).toBe("descending");
    expect(ariaSort(s, "duration_ms")).toBe("none");
  });
});

describe("paging", () => {
  it("pages forward and back within the total", () => {
    let s = defaultTableState(50);
    expect(pageInfo(s, 50, 120)).toMatchObject({ from: 1, to: 50, page: 1, pages: 3, hasPrev: false, hasNext: true });
    s = nextPage(s, 120);
    s = nextPage(s, 120);
    expect(pageInfo(s, 20, 120)).toMatchObject({ from: 101, to: 120, page: 3, hasNext: false, hasPrev: true });
    expect(nextPage(s, 120)).toBe(s);
    expect(prevPage(prevPage(prevPage(s))).offset).toBe(0);
  });
  it("handles an empty table", () => {
    expect(pageInfo(defaultTableState(), 0, 0)).toMatchObject({ from: 0, to: 0, pages: 1, hasNext: false });
  });
  it("clamps the limit to the server's 1..500 and restarts paging", () => {
    expect(clampLimit(10_000)).toBe(500);
    expect(clampLimit(0)).toBe(1);
    expect(withLimit({ ...defaultTableState(), offset: 300 }, 100)).toMatchObject({ limit: 100, offset: 0 });
  });
  it("makes the REST parameters", () => {
    expect(tableParams(defaultTableState(25)).toString()).toBe("sort=-started_at_ms&limit=25&offset=0");
  });
});

describe("cursor paging", () => {
  it("follows next_cursor forward and comes back through the same cursors", () => {
    const first = { ...defaultTableState(50), sort: "-duration_ms" as const };
    const second = nextPage(first, 10_000, "c1");
    expect(second).toMatchObject({ offset: 50, cursor: "c1", back: [null] });
    expect(tableParams(second).toString()).toBe("sort=-duration_ms&limit=50&cursor=c1");
    const third = nextPage(second, 10_000, "c2");
    expect(third).toMatchObject({ offset: 100, cursor: "c2", back: [null, "c1"] });
    expect(prevPage(third)).toMatchObject({ offset: 50, cursor: "c1", back: [null] });
    const back = prevPage(prevPage(third));
    expect(back).toMatchObject({ offset: 0, cursor: null, back: [] });
    expect(tableParams(back).toString()).toBe("sort=-duration_ms&limit=50&offset=0");
  });

  it("says there is more while the server gives a cursor, beyond a capped total", () => {
    const s = { ...defaultTableState(50), offset: 9_950, cursor: "c", back: [] };
    const info = pageInfo(s, 50, 10_000, { totalCapped: true, nextCursor: "d" });
    expect(info).toMatchObject({ from: 9_951, to: 10_000, totalCapped: true, hasNext: true, hasPrev: true });
    expect(pageInfo(s, 50, 10_000, { totalCapped: false, nextCursor: null }).hasNext).toBe(false);
  });

  it("restarts at the first page on a new sort or page size", () => {
    const deep = nextPage(defaultTableState(50), 1_000, "c1");
    expect(toggleSort(deep, "duration_ms")).toMatchObject({ offset: 0, cursor: null, back: [] });
    expect(withLimit(deep, 100)).toMatchObject({ offset: 0, cursor: null, back: [] });
  });
});

describe("mergeLiveRun", () => {
  const rows = [run("b"), run("a")];
  it("prepends a new matching run on the first newest-first page and trims to the limit", () => {
    const merged = mergeLiveRun(rows, 2, { ...defaultTableState(2) }, run("c"), true);
    expect(merged!.rows.map((r) => r.run_id)).toEqual(["c", "b"]);
    expect(merged!.total).toBe(3);
  });
  it("replaces a known run in place (running becomes success)", () => {
    const merged = mergeLiveRun([run("b", "running"), run("a")], 2, defaultTableState(), run("b", "success"), true);
    expect(merged!.rows[0].status).toBe("success");
    expect(merged!.total).toBe(2);
  });
  it("leaves other pages and sorts alone", () => {
    expect(mergeLiveRun(rows, 80, { ...defaultTableState(), offset: 50 }, run("c"), true)).toBeNull();
    expect(mergeLiveRun(rows, 2, { ...defaultTableState(), sort: "-duration_ms" }, run("c"), true)).toBeNull();
    expect(mergeLiveRun(rows, 2, defaultTableState(), run("c"), false)).toBeNull();
  });
  it("removes a row that no longer matches", () => {
    const merged = mergeLiveRun(rows, 2, defaultTableState(), run("a", "failed"), false);
    expect(merged!.rows.map((r) => r.run_id)).toEqual(["b"]);
    expect(merged!.total).toBe(1);
  });
});
