"""CrysFuseModel: ALIGNN graph encoder + text projection + a fusion variant + prediction head."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch_geometric.utils import to_dense_batch

from crysfuse.config import Config, ConfigError
from crysfuse.fusion import FUSION, FusionInputs
from crysfuse.fusion.middle import MiddleFusion
from crysfuse.models.alignn import ALIGNNEncoder
from crysfuse.models.targets import inverse_target, transform_target
from crysfuse.nn.layers import ProjectionHead, mlp


@dataclass
class ModelOutput:
    """``prediction`` ``[B]`` in target units; ``diagnostics`` from the fusion module (see fusion.base).

    With ``return_attention``: ``attention``, the fusion module's attention weights by name (``[B, Q, K]``,
    see ``FusionModule.attention_maps``), ``token_mask`` ``[B, L]``, and ``atom_gates``, the middle-fusion
    gate per atom (``middle<k>`` → ``[N]``, the mean of α over the channels).
    """

    prediction: torch.Tensor
    diagnostics: dict[str, torch.Tensor]
    attention: dict[str, torch.Tensor] = field(default_factory=dict)
    token_mask: torch.Tensor | None = None
    atom_gates: dict[str, torch.Tensor] = field(default_factory=dict)


class CrysFuseModel(nn.Module):
    """Predicts one target from a crystal graph and (optionally) its cached text embeddings.

    Targets are standardised inside the model: the head predicts ``(t(y) - mean) / std`` and ``forward``
    returns values in target units; ``mean``/``std`` are buffers, so they travel with the weights. ``t`` is
    ``data.target_transform`` (identity by default), inverted in :meth:`to_target_units`.

    ``model.head = "linear"`` (``graph_only`` only) replaces projection, fusion and MLP head by one linear
    layer on the pooled encoder output, as the reference ALIGNN's ``fc``.

    Args:
        config: The run config (model and fusion sections are used).
        dim_text: Hidden size of the text encoder (``0`` when the variant uses no text).
    """

    def __init__(self, config: Config, *, dim_text: int) -> None:
        super().__init__()
        self.config = config
        dim = config.model.dim_projection
        self.target_transform = config.data.target_transform
        self.linear_head = _check_head(config)
        self.encoder = ALIGNNEncoder(config.model)
        self.graph_projection = (None if self.linear_head
                                 else ProjectionHead(dim_in=self.encoder.dim_out, dim_out=dim))
        fusion_cls = FUSION.get(config.fusion.name)
        self.fusion = fusion_cls(dim=dim, dim_nodes=self.encoder.dim_out, config=config.fusion)
        self.middle = nn.ModuleDict({
            str(layer): MiddleFusion(dim_nodes=self.encoder.dim_out, dim_text=dim,
                                     dim_hidden=config.fusion.middle_dim_hidden, dropout=config.fusion.dropout,
                                     prefix=f"middle{layer}")
            for layer in _check_middle_layers(config)
        })
        self.uses_text = model_uses_text(config)
        self.text_projection = ProjectionHead(dim_in=dim_text, dim_out=dim) if self.uses_text else None
        self.head = (nn.Linear(self.encoder.dim_out, 1) if self.linear_head
                     else mlp(dim_in=self.fusion.dim_out, dim_hidden=config.model.dim_head, dim_out=1))
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))

    def set_target_scaling(self, mean: float, std: float) -> None:
        """Store the training-set mean and std of the (transformed) target (std of 0 is replaced by 1)."""
        self.target_mean.fill_(float(mean))
        self.target_std.fill_(float(std) if std > 0 else 1.0)

    def to_target_units(self, normalized: torch.Tensor) -> torch.Tensor:
        """``t⁻¹(p · std + mean)``: a standardised prediction ``[B]`` in target units ``[B]``."""
        return inverse_target(self.target_transform, normalized * self.target_std + self.target_mean)

    def normalize_target(self, y: torch.Tensor) -> torch.Tensor:
        """``(t(y) - mean) / std``: targets ``[B]`` as the loss sees them ``[B]``."""
        return (transform_target(self.target_transform, y) - self.target_mean) / self.target_std

    def forward_normalized(self, batch, *, step: int = -1,  # noqa: ANN001 - PyG Batch
                           return_attention: bool = False) -> ModelOutput:
        """Like :meth:`forward` but the prediction is standardised (what the loss sees)."""
        num_graphs = int(batch.num_graphs)
        tokens, token_mask, text, text_norm = self._text_inputs(batch, num_graphs)
        diagnostics: dict[str, torch.Tensor] = {}
        atom_gates: dict[str, torch.Tensor] = {}

        def inject_text(index: int, x: torch.Tensor) -> torch.Tensor:
            module = self.middle[str(index)] if str(index) in self.middle else None
            if module is None:
                return x
            x, middle_diagnostics, per_atom = module(x, text, batch.batch)
            diagnostics.update(middle_diagnostics)
            atom_gates[module.prefix] = per_atom
            return x

        encoding = self.encoder(batch, inject_text if len(self.middle) else None)
        if self.graph_projection is None:  # linear head: fc on the pooled graph vector, nothing in between
            return ModelOutput(prediction=self._predict(encoding.graph), diagnostics=diagnostics)
        graph = self.graph_projection(encoding.graph)
        inputs = FusionInputs(
            graph=graph, nodes=encoding.nodes, node_batch=batch.batch, tokens=tokens, token_mask=token_mask,
            text=text if self.uses_text else graph.new_zeros(graph.shape), text_norm=text_norm, step=step,
            return_attention=return_attention,
        )
        fused = self.fusion(inputs)
        diagnostics.update(fused.diagnostics)
        output = ModelOutput(prediction=self._predict(fused.fused), diagnostics=diagnostics)
        if return_attention:
            output.attention, output.token_mask, output.atom_gates = fused.attention, token_mask, atom_gates
        return output

    def _predict(self, features: torch.Tensor) -> torch.Tensor:
        """The head on ``[B, F]`` features → standardised predictions ``[B]``, always in float32: under bf16
        autocast a bfloat16 prediction keeps 8 significant bits, i.e. steps of 0.03 at a target of 5, a
        rounding error of the same order as a good model's MAE."""
        with torch.autocast(features.device.type, enabled=False):
            return self.head(features.float()).squeeze(-1)

    def forward(self, batch, *, step: int = -1, return_attention: bool = False) -> ModelOutput:  # noqa: ANN001
        """Predict in target units. ``batch`` is a collated :class:`crysfuse.data.dataset.CrystalData` batch;
        ``return_attention`` also returns the fusion module's attention weights (see :class:`ModelOutput`)."""
        output = self.forward_normalized(batch, step=step, return_attention=return_attention)
        output.prediction = self.to_target_units(output.prediction)
        return output

    def _text_inputs(
        self, batch, num_graphs: int  # noqa: ANN001
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Projected tokens ``[B, L, P]``, mask ``[B, L]``, pooled text ``[B, P]``, raw pooled norm ``[B]``."""
        dim = self.config.model.dim_projection
        device = batch.edge_vectors.device
        dtype = self.encoder.atom_embedding[0].weight.dtype
        if self.text_projection is None:
            return (torch.zeros(num_graphs, 0, dim, device=device, dtype=dtype),
                    torch.zeros(num_graphs, 0, dtype=torch.bool, device=device),
                    torch.zeros(num_graphs, dim, device=device, dtype=dtype),
                    torch.zeros(num_graphs, device=device, dtype=dtype))
        token_states = batch.text_tokens.to(dtype)
        tokens, token_mask = to_dense_batch(token_states, batch.text_tokens_batch, batch_size=num_graphs)
        tokens = self.text_projection(tokens) * token_mask.unsqueeze(-1).to(dtype)
        pooled = batch.text_pooled.to(dtype)
        return tokens, token_mask, self.text_projection(pooled), torch.linalg.vector_norm(pooled, dim=-1)

    def num_parameters(self) -> int:
        """Trainable parameter count."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def num_fusion_parameters(self) -> int:
        """Parameters that text fusion adds on top of ``graph_only`` (text projection, fusion, wider head)."""
        if self.linear_head:
            return 0
        dim = self.config.model.dim_projection
        graph_only_head = mlp(dim_in=dim, dim_hidden=self.config.model.dim_head, dim_out=1)
        head_extra = sum(p.numel() for p in self.head.parameters()) - sum(
            p.numel() for p in graph_only_head.parameters()
        )
        text = sum(p.numel() for p in self.text_projection.parameters()) if self.text_projection else 0
        fusion = sum(p.numel() for p in self.fusion.parameters())
        middle = sum(p.numel() for p in self.middle.parameters())
        return text + fusion + middle + head_extra


def model_uses_text(config: Config) -> bool:
    """Whether a model of this config reads text (its fusion variant does, or middle fusion is on)."""
    return FUSION.get(config.fusion.name).uses_text or bool(config.fusion.middle_layers)


def _check_head(config: Config) -> bool:
    """Whether the config asks for the linear head; it only fits ``graph_only`` without middle fusion."""
    if config.model.head != "linear":
        return False
    if config.fusion.name != "graph_only" or config.fusion.middle_layers:
        raise ConfigError("model.head 'linear' needs fusion.name 'graph_only' and no fusion.middle_layers "
                          f"(got {config.fusion.name!r}, middle layers {config.fusion.middle_layers})")
    return True


def _check_middle_layers(config: Config) -> list[int]:
    layers = sorted(set(config.fusion.middle_layers))
    bad = [k for k in layers if not 0 <= k < config.model.num_alignn_layers]
    if bad:
        raise ConfigError(
            f"fusion.middle_layers {bad} out of range: the model has {config.model.num_alignn_layers} ALIGNN layers"
        )
    return layers


def variant_parameter_counts(config: Config, *, dim_text: int) -> list[tuple[str, int, int, str]]:
    """``(key, parameters added over graph_only, total parameters, description)`` for every registered fusion
    variant, counted on models built with the sizes of ``config`` (text variants always with the projection
    head: ``model.head = "linear"`` only fits ``graph_only``)."""
    rows = []
    for name in FUSION.names():
        linear = config.model.head == "linear" and name == "graph_only" and not config.fusion.middle_layers
        changes = {"fusion.name": name, "model.head": "linear" if linear else "projection"}
        model = CrysFuseModel(config.replace(changes), dim_text=dim_text)
        rows.append((name, model.num_fusion_parameters(), model.num_parameters(), FUSION.get(name).description))
    return rows

