import { describe, expect, it } from "vitest";
import {
  EMPTY,
  bytesScale,
  formatBytes,
  formatChange,
  formatCount,
  formatDateTime,
  formatDuration,
  formatDurationDelta,
  formatPercent,
  formatRelative,
  formatShortTime,
  formatValue,
  shortId,
} from "../src/format";

describe("formatBytes", () => {
  it("uses binary units by default and decimal when asked", () => {
    expect(formatBytes(1536)).toBe("1.5 KiB");
    expect(formatBytes(8 * 1024 ** 3)).toBe("8 GiB");
    expect(formatBytes(24_000_000_000, "decimal")).toBe("24 GB");
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(123.456 * 1024 ** 2)).toBe("123 MiB");
  });
  it("shows missing values as a dash, never NaN", () => {
    expect(formatBytes(null)).toBe(EMPTY);
    expect(formatBytes(undefined)).toBe(EMPTY);
    expect(formatBytes(Number.NaN)).toBe(EMPTY);
  });
  it("picks one axis unit from the largest value", () => {
    expect(bytesScale(3 * 1024 ** 3)).toEqual({ divisor: 1024 ** 3, unit: "GiB" });
    expect(bytesScale(500, "decimal")).toEqual({ divisor: 1, unit: "B" });
  });
});

describe("formatDuration", () => {
  it("reads naturally at every scale", () => {
    expect(formatDuration(850)).toBe("850 ms");
    expect(formatDuration(1234)).toBe("1.23 s");
    expect(formatDuration(12_345)).toBe("12.3 s");
    expect(formatDuration(245_000)).toBe("4 m 05 s");
    expect(formatDuration(3_720_000)).toBe("1 h 02 m");
    expect(formatDuration(3 * 86_400_000 + 3_600_000)).toBe("3 d 1 h");
    expect(formatDuration(null)).toBe(EMPTY);
  });
  it("signs deltas", () => {
    expect(formatDurationDelta(1200)).toBe("+1.2 s");
    expect(formatDurationDelta(-350)).toBe("-350 ms");
    expect(formatDurationDelta(0)).toBe("±0 ms");
  });
});

describe("percent, change, count", () => {
  it("formats ratios as percent", () => {
    expect(formatPercent(0.9512)).toBe("95.1%");
    expect(formatPercent(1)).toBe("100%");
    expect(formatPercent(0)).toBe("0%");
    expect(formatPercent(0.05)).toBe("5%");
    expect(formatPercent(null)).toBe(EMPTY);
  });
  it("formats relative change", () => {
    expect(formatChange(100, 112)).toBe("+12%");
    expect(formatChange(200, 193)).toBe("-3.5%");
    expect(formatChange(0, 5)).toBe(EMPTY);
    expect(formatChange(10, 10)).toBe("±0%");
  });
  it("groups thousands independent of locale", () => {
    expect(formatCount(1234567)).toBe("1,234,567");
    expect(formatCount(999)).toBe("999");
    expect(formatCount(-1200)).toBe("-1,200");
  });
});

describe("times", () => {
  const now = Date.UTC(2025, 2, 5, 14, 30, 0);
  it("formats absolute and short times (TZ=UTC in tests)", () => {
    expect(formatDateTime(Date.UTC(2025, 2, 5, 14, 2, 9), true)).toBe("2025-03-05 14:02:09");
    expect(formatShortTime(Date.UTC(2025, 2, 5, 9, 7), now)).toBe("09:07");
    expect(formatShortTime(Date.UTC(2025, 0, 2, 9, 7), now)).toBe("Jan 2 09:07");
    expect(formatShortTime(Date.UTC(2024, 0, 2, 9, 7), now)).toBe("2024-01-02");
  });
  it("formats relative times both ways", () => {
    expect(formatRelative(now - 2000, now)).toBe("just now");
    expect(formatRelative(now - 45_000, now)).toBe("45 s ago");
    expect(formatRelative(now - 3 * 60_000, now)).toBe("3 min ago");
    expect(formatRelative(now + 30_000, now)).toBe("in 30 s");
    expect(formatRelative(now - 2 * 86_400_000, now)).toBe("2 d ago");
  });
});

describe("formatValue and shortId", () => {
  it("renders any parameter value as one line", () => {
    expect(formatValue(["a.safetensors", "b.safetensors"])).toBe("a.safetensors, b.safetensors");
    expect(formatValue({ name: "x", strength: 0.8 })).toBe('{"name":"x","strength":0.8}');
    expect(formatValue(null)).toBe(EMPTY);
    expect(formatValue([])).toBe(EMPTY);
    expect(formatValue(true)).toBe("yes");
    expect(formatValue(7.5)).toBe("7.5");
  });
  it("shortens ids", () => {
    expect(shortId("0123456789abcdef")).toBe("01234567");
    expect(shortId("abc")).toBe("abc");
    expect(shortId(null)).toBe(EMPTY);
  });
});
