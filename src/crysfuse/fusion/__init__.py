"""Graph–text fusion variants, one file and one registry key each.

Importing :mod:`crysfuse.fusion` registers every built-in variant in :data:`FUSION`, in the order below
(the order `crysfuse models` and the configuration reference list them), hence no import sorting here.
"""
# ruff: noqa: I001

from crysfuse.fusion import graph_only, concat, cross_attention, gated, simplified  # noqa: F401
from crysfuse.fusion import quality, balanced, warmup, text_only  # noqa: F401
from crysfuse.fusion.base import FUSION, FusionInputs, FusionModule, FusionOutput

__all__ = ["FUSION", "FusionInputs", "FusionModule", "FusionOutput"]
