"""Plain-text tables for logs and the terminal."""

from __future__ import annotations

from collections.abc import Sequence


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """Right-aligned columns, two spaces apart."""
    lines = [tuple(header), *(tuple(row) for row in rows)]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    return "\n".join(
        indent + "  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)) for line in lines
    )
