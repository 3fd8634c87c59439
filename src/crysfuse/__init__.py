"""crysfuse: crystal graph + text fusion for property prediction.

Nothing heavy is imported here: ``crysfuse.load``, ``crysfuse.train`` and ``crysfuse.Config`` are resolved on
first use, so ``import crysfuse`` is cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Config", "__version__", "load", "train"]


def __getattr__(name: str) -> Any:
    if name == "Config":
        from crysfuse.config import Config

        return Config
    if name in ("load", "train"):
        from crysfuse import api

        return getattr(api, name)
    raise AttributeError(f"module 'crysfuse' has no attribute {name!r}")
