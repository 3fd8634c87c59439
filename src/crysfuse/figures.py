"""Matplotlib with the Agg backend (no display needed), and figures written as PNG files atomically.

Importing this module selects the Agg backend, so it is imported only by code that draws (the analyses, and
the gate monitor when it writes its plot).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from crysfuse.io import write_bytes_atomic

__all__ = ["plt", "save_figure"]


def save_figure(figure: Any, path: Path) -> None:
    """Render ``figure`` to PNG and write it atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    write_bytes_atomic(Path(path), buffer.getvalue())
