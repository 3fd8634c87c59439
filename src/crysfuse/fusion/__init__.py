"""Graph–text fusion variants, one file and one registry key each.

Importing :mod:`crysfuse.fusion` registers every built-in variant in :data:`FUSION`.
"""

from crysfuse.fusion import concat, graph_only, simplified  # noqa: F401  (registration)
from crysfuse.fusion.base import FUSION, FusionInputs, FusionModule, FusionOutput

__all__ = ["FUSION", "FusionInputs", "FusionModule", "FusionOutput"]
