"""Tables whose rows are one line each at the terminal's width: long cells end in an ellipsis; `--wide` shows
every cell whole (and `--json` gives the data). Rich's own squeezing shrinks every column alike (a date to
"2026-1…" while a message keeps its room), so the widths are chosen here and handed to rich as max_width."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer

WideOpt = Annotated[
    bool,
    typer.Option("--wide", help="show every cell whole, even when a row is wider than the terminal"),
]
MIN_CUT = 8  # a cut cell keeps at least this many characters (with its ellipsis)


def print_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    wide: bool = False,
    cut: Sequence[str] = (),
    right: Sequence[str] = (),
    title: str | None = None,
    width: int | None = None,
) -> None:
    """Print `rows` under `columns`. Without `wide`, the `cut` columns (the long, free-text ones) share what
    room the others leave, the longest cut first; the others are never cut. `width`: the console's (tests)."""
    from rich import box
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

    # one line per row: a newline inside a message would start a second one
    cells = [[" ".join(str(c).split()) for c in r] for r in rows]

    def build(caps: dict[str, int]) -> Table:
        # as `hfp top`: a rule under the head, two spaces between columns, no frame: room for the cells
        table = Table(
            title=title,
            title_justify="left",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            padding=(0, 1, 0, 0),
        )
        for c in columns:
            table.add_column(
                c,
                no_wrap=True,
                overflow="ellipsis",
                max_width=caps.get(c),
                justify="right" if c in right else "left",
            )
        for r in cells:
            table.add_row(*map(Text, r))  # Text, not markup: names and messages may hold brackets
        return table

    console = Console(width=width) if width else Console()
    table = build({})
    need = Measurement.get(console, console.options.update(width=10**6), table).maximum
    if wide:
        console = Console(
            width=max(need, console.width)
        )  # rows as long as they need: the terminal folds them
    elif need > console.width:
        table = build(_caps(columns, cells, cut, need - console.width))
    console.print(table)


def _caps(columns: Sequence[str], cells: list[list[str]], cut: Sequence[str], excess: int) -> dict[str, int]:
    """The widest the `cut` columns may be so the table loses `excess` characters: one cap for all of them
    (water filling), so a short cut column stays whole while the longest gives the most."""
    natural = {c: max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns) if c in cut}
    if not natural:
        return {}
    target = sum(natural.values()) - excess
    cap = max(natural.values())
    while cap > MIN_CUT and sum(min(w, cap) for w in natural.values()) > target:
        cap -= 1
    return {c: cap for c, w in natural.items() if w > cap}
