"""Plain-text tables for the terminal: columns padded to their widest cell, over-long cells cut with "…"."""

from __future__ import annotations

from collections.abc import Sequence

MAX_CELL = 40


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]], right: frozenset[int] = frozenset(),
                 max_cell: int = MAX_CELL) -> str:
    """The table as lines; columns whose index is in `right` are right-aligned (numbers)."""
    cells = [[_cell(value, max_cell) for value in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        padded = [v.rjust(widths[i]) if i in right else v.ljust(widths[i]) for i, v in enumerate(values)]
        return "  ".join(padded).rstrip()

    return "\n".join([line(list(headers)), line(["-" * w for w in widths]), *(line(row) for row in cells)])


def _cell(value: object, max_cell: int) -> str:
    text = "-" if value is None else " ".join(str(value).split())
    return text if len(text) <= max_cell else text[: max_cell - 1] + "…"
