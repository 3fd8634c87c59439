"""Graph–text fusion variants, one file and one registry key each.

Importing :mod:`crysfuse.fusion` registers every built-in variant in :data:`FUSION`.
"""

from crysfuse.fusion import (  # noqa: F401  (registration, in the order `crysfuse models` lists them)
    graph_only,
    concat,
    cross_attention,
    gated,
    simplified,
    quality,
    balanced,
    warmup,
)
from crysfuse.fusion.base import FUSION, FusionInputs, FusionModule, FusionOutput

__all__ = ["FUSION", "FusionInputs", "FusionModule", "FusionOutput"]
