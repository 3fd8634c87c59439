"""``crysfuse explain``: what a trained model attended to — its own atom↔token attention for chosen crystals.

The weights are the model's real attention: the fusion module returns the head-averaged weights of its
``nn.MultiheadAttention`` layers on request (``return_attention=True`` on one forward call; the maps and what
their queries and keys are come from the variant's ``attention_maps`` declaration), nothing is recomputed.
For a token map, each query (an atom, the pooled graph vector) has one weight per text token, summing to 1 over
the crystal's tokens; the tokens are grouped into words (:mod:`crysfuse.analysis.words`). With middle fusion
the per-atom gate (mean α over channels) is reported too: it says how much of the pooled text each atom takes
in (it is a gate, not an attention over tokens). A model without any of these raises
:class:`NotExplainableError`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pymatgen.core import Element

from crysfuse.analysis.explain_errors import NotExplainableError
from crysfuse.analysis.plots import attention_heatmap
from crysfuse.analysis.words import TokenWords, token_words
from crysfuse.data.dataset import CrystalData, make_loader
from crysfuse.data.pipeline import prepare
from crysfuse.data.sources import load_config_records
from crysfuse.figures import save_figure
from crysfuse.io import write_csv_atomic, write_json_atomic
from crysfuse.predict import precision_context
from crysfuse.rundir import LoadedModel, load_run, read_splits
from crysfuse.rundir.layout import (
    ATTENTION_CSV_FILE,
    ATTENTION_JSON_FILE,
    TOP_WORDS_CSV_FILE,
    attention_plot_file,
)

logger = logging.getLogger(__name__)

DEFAULT_CRYSTALS = 3
"""Crystals explained when no ids are given: the first ones of the run's test split."""
TOP_WORDS = 5
"""Words listed per query in ``top_words.csv``."""


@dataclass
class AttentionMap:
    """One attention map of one crystal.

    Attributes:
        name: The fusion module's name for it (``atoms_to_text``, ``graph_to_text``, ``text_to_atoms``).
        query_kind, key_kind: ``atoms``, ``tokens``, ``graph`` or ``text`` (``FusionModule.attention_maps``).
        queries: ``[Q]`` labels (atoms as element + index, ``graph``, ``text``).
        token_weights: ``[Q, K]`` the module's weights over the valid keys (tokens or atoms), as returned.
        weights: ``[Q, W]`` over words for a token map (pieces summed), else the same as ``token_weights``.
    """

    name: str
    query_kind: str
    key_kind: str
    queries: list[str]
    token_weights: np.ndarray
    weights: np.ndarray


@dataclass
class CrystalExplanation:
    """The attention maps of one crystal, with its atoms, tokens, words, target and prediction."""

    id: str
    target: float
    prediction: float
    atoms: list[str]
    text: TokenWords
    maps: list[AttentionMap] = field(default_factory=list)
    atom_gates: dict[str, list[float]] = field(default_factory=dict)

    def keys_of(self, attention: AttentionMap) -> list[str]:
        """Labels of ``attention.weights``' columns: words for a token map, atoms otherwise."""
        return self.text.words if attention.key_kind == "tokens" else self.atoms


def explainable_maps(loaded: LoadedModel) -> dict[str, tuple[str, str]]:
    """The attention maps the run's model returns; raises :class:`NotExplainableError` when it has neither
    attention over the text nor middle fusion."""
    model = loaded.model
    maps = dict(getattr(model.fusion, "attention_maps", {}))
    if not maps and not len(model.middle):
        raise NotExplainableError(
            f"fusion variant '{loaded.config.fusion.name}' has no attention between atoms and text tokens and no "
            "middle fusion: nothing to explain. Variants with attention maps: see `crysfuse models` (cross_attention, "
            "the gated family, simplified, warmup) or train with fusion.middle_layers")
    return maps


def atom_labels(atomic_numbers: Sequence[int]) -> list[str]:
    """``["Ti0", "O1", ...]``: element symbol + the atom's index in the structure."""
    labels = []
    for index, z in enumerate(atomic_numbers):
        try:
            symbol = Element.from_Z(int(z)).symbol
        except ValueError:
            symbol = f"Z{int(z)}"
        labels.append(f"{symbol}{index}")
    return labels


def _query_labels(kind: str, atoms: list[str]) -> list[str]:
    return atoms if kind == "atoms" else [kind]


@torch.no_grad()
def explain_item(loaded: LoadedModel, record_id: str, item: CrystalData, text: str | None,
                 tokenizer: Any | None) -> CrystalExplanation:
    """Run the model on one crystal with ``return_attention`` and cut its maps to the valid atoms/tokens."""
    model, config = loaded.model.eval(), loaded.config
    declared = dict(getattr(model.fusion, "attention_maps", {}))
    device = next(model.parameters()).device
    batch = next(iter(make_loader([item], batch_size=1, shuffle=False))).to(device)
    with precision_context(config.train.precision, device):
        output = model(batch, return_attention=True)
    atoms = atom_labels(item.atomic_numbers.tolist())
    # Frozen encoder: the cached token states; a fine-tuned one: the token ids it encodes in the step.
    num_tokens = int((item.text_ids if "text_ids" in item else item.text_tokens).shape[0])
    words = (token_words(tokenizer, text, max_length=config.text.max_length, num_tokens=num_tokens)
             if tokenizer is not None else TokenWords([], [], []))
    explanation = CrystalExplanation(id=record_id, target=float(batch.y[0]),
                                     prediction=float(output.prediction[0]), atoms=atoms, text=words)
    sizes = {"atoms": len(atoms), "tokens": num_tokens, "graph": 1, "text": 1}
    for name, weights in output.attention.items():
        query_kind, key_kind = declared.get(name, ("?", "?"))
        raw = weights[0, :sizes.get(query_kind, weights.size(1)), :sizes.get(key_kind, weights.size(2))]
        raw = raw.float().cpu().numpy().astype(float)
        merged = words.merge(raw) if key_kind == "tokens" else raw
        explanation.maps.append(AttentionMap(name, query_kind, key_kind, _query_labels(query_kind, atoms),
                                             raw, merged))
    for name, per_atom in output.atom_gates.items():
        explanation.atom_gates[name] = [float(v) for v in per_atom.float().cpu()]
    return explanation


def explain(run_dir: str | Path, *, ids: Sequence[str] | None = None, n: int = DEFAULT_CRYSTALS,
            split: str = "test", data: str | None = None) -> list[CrystalExplanation]:
    """Explain ``ids`` (default: the first ``n`` crystals of the run's ``split``) of a finished run.

    Raises:
        NotExplainableError: the model has nothing to explain, or an id is not in the data.
    """
    loaded = load_run(run_dir)
    explainable_maps(loaded)
    if not ids:
        splits = read_splits(run_dir)
        ids = list(splits.get(split, []))[:n]
        if not ids:
            raise NotExplainableError(f"the run's {split} split is empty; pass --ids")
    config = loaded.config
    records = load_config_records(config, path=data, ids=set(ids), require_target=False).records
    prepared = prepare(records, config, uses_text=loaded.model.uses_text)
    missing = [i for i in ids if i not in prepared.items]
    if missing:
        raise NotExplainableError(f"{len(missing)} id(s) not found in {data or config.data.path} (or rejected): "
                                  + ", ".join(missing[:10]))
    tokenizer = prepared.text_side.encoder.tokenizer if prepared.text_side is not None else None
    result = [explain_item(loaded, i, prepared.items[i], prepared.texts.get(i), tokenizer) for i in ids]
    logger.info("explained %d crystal(s) of %s", len(result), run_dir)
    return result


def top_words(explanation: CrystalExplanation, attention: AttentionMap, k: int = TOP_WORDS) -> list[dict[str, Any]]:
    """The ``k`` heaviest keys of every query of a map: ``{query, rank, word_index, word, weight}`` rows
    (``word_index`` tells apart words that occur more than once)."""
    keys = explanation.keys_of(attention)
    rows = []
    for query, weights in zip(attention.queries, attention.weights):
        for rank, column in enumerate(np.argsort(-weights, kind="stable")[:k]):
            rows.append({"query": query, "rank": rank + 1, "word_index": int(column), "word": keys[column],
                         "weight": float(weights[column])})
    return rows


def to_json(explanation: CrystalExplanation) -> dict[str, Any]:
    """One crystal as plain JSON: atoms, tokens, words, and every map at token and word level."""
    return {
        "id": explanation.id, "target": explanation.target, "prediction": explanation.prediction,
        "atoms": explanation.atoms, "tokens": explanation.text.tokens, "words": explanation.text.words,
        "word_of_token": explanation.text.word_of_token,
        "maps": {m.name: {"queries": m.queries, "query_kind": m.query_kind, "key_kind": m.key_kind,
                          "keys": explanation.keys_of(m),
                          "weights": np.round(m.weights, 6).tolist(),
                          "token_weights": np.round(m.token_weights, 6).tolist(),
                          "top": top_words(explanation, m)}
                 for m in explanation.maps},
        "atom_gates": explanation.atom_gates,
    }


def write_explanations(explanations: list[CrystalExplanation], out_dir: str | Path, *,
                       run: str | Path) -> list[Path]:
    """``attention.json``, ``attention_words.csv``, ``top_words.csv`` and one heatmap per crystal in
    ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    write_json_atomic(out_dir / ATTENTION_JSON_FILE,
                      {"run": str(run), "crystals": [to_json(e) for e in explanations]})
    long_rows = ([e.id, m.name, query, column, key, round(float(w), 6)]
                 for e in explanations for m in e.maps
                 for query, row in zip(m.queries, m.weights) for column, (key, w) in enumerate(zip(e.keys_of(m), row)))
    write_csv_atomic(out_dir / ATTENTION_CSV_FILE, ["id", "map", "query", "word_index", "word", "weight"], long_rows)
    top_rows = ([e.id, m.name, r["query"], r["rank"], r["word_index"], r["word"], round(r["weight"], 6)]
                for e in explanations for m in e.maps for r in top_words(e, m))
    write_csv_atomic(out_dir / TOP_WORDS_CSV_FILE, ["id", "map", "query", "rank", "word_index", "word", "weight"],
                     top_rows)
    paths = [out_dir / ATTENTION_JSON_FILE, out_dir / ATTENTION_CSV_FILE, out_dir / TOP_WORDS_CSV_FILE]
    for position, explanation in enumerate(explanations):
        path = out_dir / attention_plot_file(position, explanation.id)
        save_figure(attention_heatmap(explanation), path)
        paths.append(path)
    return paths
