"""Markdown tables, readable in a terminal and pasteable into docs (the ``e4gym`` verbs' output, reports)."""

from __future__ import annotations

from collections.abc import Sequence


def markdown_table(headers: Sequence[object], rows: Sequence[Sequence[object]], align: str = "") -> str:
    """A Markdown table with padded columns (cells are ``str()``-ed).

    ``align`` has one ``l``/``r`` (left/right) per column, or one letter for every column; the default is the
    first column left, the rest right.
    """
    if len(align) == 1:
        align *= len(headers)
    align = align or "l" + "r" * (len(headers) - 1)
    widths = [max([len(str(h)), *(len(str(r[i])) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(str(c).ljust(w) if a == "l" else str(c).rjust(w)
                                 for c, w, a in zip(cells, widths, align)) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2)) for w, a in zip(widths, align)) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])
