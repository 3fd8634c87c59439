"""CrysFuseModel: ALIGNN graph encoder + text projection + a fusion variant + prediction head (+ the text
encoder itself when ``text.finetune`` trains it)."""

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
from crysfuse.text.finetune import TrainableTextEncoder, check_finetune


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
        fusion_cls = FUSION.get(config.fusion.name)
        self.uses_graph = fusion_cls.uses_graph
        self.encoder = ALIGNNEncoder(config.model) if self.uses_graph else None
        dim_nodes = self.encoder.dim_out if self.encoder is not None else config.model.dim_hidden
        self.graph_projection = (ProjectionHead(dim_in=dim_nodes, dim_out=dim)
                                 if self.uses_graph and not self.linear_head else None)
        self.fusion = fusion_cls(dim=dim, dim_nodes=dim_nodes, config=config.fusion)
        self.middle = nn.ModuleDict({
            str(layer): MiddleFusion(dim_nodes=dim_nodes, dim_text=dim,
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
        # Built last, so that the other modules get the same initial weights as with a frozen encoder.
        check_finetune(config.text)
        self.text_encoder = _trainable_text_encoder(config, dim_text) if self.uses_text else None

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

    def forward_normalized(self, batch, *, step: int = -1,
                           return_attention: bool = False) -> ModelOutput:
        """Like :meth:`forward` but the prediction is standardised (what the loss sees)."""
        num_graphs = int(batch.num_graphs)
        tokens, token_mask, text, text_norm = self._text_inputs(batch, num_graphs)
        diagnostics: dict[str, torch.Tensor] = {}
        atom_gates: dict[str, torch.Tensor] = {}

        def inject_text(index: int, x: torch.Tensor) -> torch.Tensor:
            module = self.middle[str(index)] if str(index) in self.middle else None  # noqa: SIM401
            if module is None:
                return x
            x, middle_diagnostics, per_atom = module(x, text, batch.batch)
            diagnostics.update(middle_diagnostics)
            atom_gates[module.prefix] = per_atom
            return x

        if self.encoder is not None:
            encoding = self.encoder(batch, inject_text if len(self.middle) else None)
            if self.linear_head:  # fc on the pooled graph vector, nothing in between
                return ModelOutput(prediction=self._predict(encoding.graph), diagnostics=diagnostics)
            graph, nodes = self.graph_projection(encoding.graph), encoding.nodes
        else:  # text_only: no graph encoder is run
            graph = text.new_zeros(num_graphs, self.config.model.dim_projection)
            nodes = text.new_zeros(int(batch.batch.numel()), self.config.model.dim_hidden)
        inputs = FusionInputs(
            graph=graph, nodes=nodes, node_batch=batch.batch, tokens=tokens, token_mask=token_mask,
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

    def forward(self, batch, *, step: int = -1, return_attention: bool = False) -> ModelOutput:
        """Predict in target units. ``batch`` is a collated :class:`crysfuse.data.dataset.CrystalData` batch;
        ``return_attention`` also returns the fusion module's attention weights (see :class:`ModelOutput`)."""
        output = self.forward_normalized(batch, step=step, return_attention=return_attention)
        output.prediction = self.to_target_units(output.prediction)
        return output

    def _text_inputs(
        self, batch, num_graphs: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Projected tokens ``[B, L, P]``, mask ``[B, L]``, pooled text ``[B, P]``, raw pooled norm ``[B]``.

        The token states ``[B, L, D_t]`` come from the cached frozen embeddings of the batch, or, when the encoder
        is trained with the model, from running it on the batch's token ids (pooled: their masked mean)."""
        dim = self.config.model.dim_projection
        device = batch.edge_vectors.device
        dtype = next(self.head.parameters()).dtype
        if self.text_projection is None:
            return (torch.zeros(num_graphs, 0, dim, device=device, dtype=dtype),
                    torch.zeros(num_graphs, 0, dtype=torch.bool, device=device),
                    torch.zeros(num_graphs, dim, device=device, dtype=dtype),
                    torch.zeros(num_graphs, device=device, dtype=dtype))
        if self.text_encoder is not None:
            states, token_mask = self._encode_token_ids(batch, num_graphs)
            mask = token_mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            states, pooled = states.to(dtype), pooled.to(dtype)
        else:
            states, token_mask = to_dense_batch(batch.text_tokens.to(dtype), batch.text_tokens_batch,
                                                batch_size=num_graphs)
            pooled = batch.text_pooled.to(dtype)
        tokens = self.text_projection(states) * token_mask.unsqueeze(-1).to(dtype)
        return tokens, token_mask, self.text_projection(pooled), torch.linalg.vector_norm(pooled, dim=-1)

    def _encode_token_ids(self, batch, num_graphs: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the trained encoder on the batch's token ids: states ``[B, T, D_t]`` float32, mask ``[B, T]``."""
        if "text_ids" not in batch:
            raise ValueError("this model trains its text encoder (text.finetune="
                             f"{self.config.text.finetune}) and needs token ids in its items, not embeddings")
        lengths = torch.bincount(batch.text_ids_batch, minlength=num_graphs)
        return self.text_encoder(batch.text_ids, lengths)

    def text_encoder_parameters(self) -> list[nn.Parameter]:
        """The trained parameters of the text encoder (its own optimizer group); empty when it is frozen."""
        if self.text_encoder is None:
            return []
        return [p for p in self.text_encoder.parameters() if p.requires_grad]

    def num_parameters(self) -> int:
        """Trainable parameter count."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def num_fusion_parameters(self) -> int:
        """Parameters that text fusion adds on top of ``graph_only`` (text projection, fusion, wider head, and
        the trained weights of a fine-tuned text encoder); ``text_only`` also drops the graph encoder's."""
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
        encoder = sum(p.numel() for p in self.text_encoder_parameters())  # trained encoder weights, if any
        return text + fusion + middle + head_extra + encoder


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


def _trainable_text_encoder(config: Config, dim_text: int) -> TrainableTextEncoder | None:
    """The text encoder as a module of the model when ``text.finetune`` trains it, else ``None``."""
    if config.text.finetune == "none":
        return None
    encoder = TrainableTextEncoder(config.text)
    if encoder.dim != dim_text:
        raise ConfigError(f"text encoder width {encoder.dim} differs from dim_text {dim_text}")
    return encoder


def _check_middle_layers(config: Config) -> list[int]:
    layers = sorted(set(config.fusion.middle_layers))
    if layers and not FUSION.get(config.fusion.name).uses_graph:
        raise ConfigError(f"fusion.middle_layers injects text into the graph encoder, which "
                          f"'{config.fusion.name}' does not have")
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
    for name in FUSION.names():  # counted with a frozen encoder: the listing never loads a language model
        linear = config.model.head == "linear" and name == "graph_only" and not config.fusion.middle_layers
        changes = {"fusion.name": name, "model.head": "linear" if linear else "projection", "text.finetune": "none"}
        model = CrysFuseModel(config.replace(changes), dim_text=dim_text)
        rows.append((name, model.num_fusion_parameters(), model.num_parameters(), FUSION.get(name).description))
    return rows



def matched_head_width(config: Config, variant: str, *, dim_text: int) -> tuple[int, int, int]:
    """The parameter-matched ``graph_only`` control of a fusion variant: the ``model.dim_head`` at which
    ``graph_only`` (projection head, no middle fusion, other sizes as in ``config``) has as many trainable
    parameters as ``variant`` (frozen text encoder), so that "text helps" cannot be mere capacity.

    Returns:
        ``(dim_head, graph_only parameters at that width, variant parameters)``.
    """
    target = CrysFuseModel(config.replace({"fusion.name": variant, "model.head": "projection",
                                           "text.finetune": "none"}), dim_text=dim_text).num_parameters()
    graph_only = config.replace({"fusion.name": "graph_only", "model.head": "projection", "fusion.middle_layers": []})

    def count(width: int) -> int:
        return CrysFuseModel(graph_only.replace({"model.dim_head": width}), dim_text=0).num_parameters()

    per_unit = count(2) - count(1)  # the head is Linear(P, w) → SiLU → Linear(w, 1): linear in w
    width = max(1, round(1 + (target - count(1)) / per_unit))
    return width, count(width), target
