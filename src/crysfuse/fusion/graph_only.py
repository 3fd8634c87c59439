"""``graph_only``: the text is ignored; the baseline every fusion variant is measured against."""

from __future__ import annotations

from crysfuse.fusion.base import FUSION, FusionInputs, FusionModule, FusionOutput


@FUSION.register("graph_only")
class GraphOnlyFusion(FusionModule):
    """fused = g. Shapes: ``[B, P]`` → ``[B, P]``."""

    uses_text = False
    description = "ALIGNN alone: fused = g (text ignored)"
    equation = "fused = g"

    def forward(self, inputs: FusionInputs) -> FusionOutput:
        return FusionOutput(fused=inputs.graph)
