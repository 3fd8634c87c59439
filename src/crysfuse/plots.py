"""Matplotlib figures (Agg backend, PNG files); imported only by the commands that draw."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from crysfuse.io import write_bytes_atomic  # noqa: E402


def save_figure(figure: Any, path: Path) -> None:
    """Render ``figure`` to PNG and write it atomically."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    write_bytes_atomic(Path(path), buffer.getvalue())


def lines_by_group(
    rows: Sequence[dict[str, Any]], *, x: str, y: str, group: Sequence[str], title: str, ylabel: str
) -> Any:
    """One line per distinct value of ``group`` columns, ``y`` against ``x``."""
    figure, axis = plt.subplots(figsize=(6, 4))
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault("/".join(str(row[g]) for g in group), []).append(row)
    for label, members in groups.items():
        members = sorted(members, key=lambda r: r[x])
        axis.plot([r[x] for r in members], [r[y] for r in members], marker="o", label=label)
    axis.set_xlabel(x)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    if groups:
        axis.legend(fontsize=8)
    return figure
