"""Markdown tables of benchmark results (the form ``docs/benchmarks.md`` records them in)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]],
                   right_aligned: Collection[str] = ()) -> str:
    """A markdown table: ``header`` titles, one line per row of cells (already formatted);
    the columns named in ``right_aligned`` are aligned right (numbers)."""
    rule = ("---:" if title in right_aligned else "---" for title in header)
    lines = [_line(header), _line(rule)]
    lines.extend(_line(cells) for cells in rows)
    return "\n".join(lines)


def _line(cells: Iterable[object]) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"
