"""What a data source holds and what training would make of it (``crysfuse data check PATH``).

Reads the source as ``crysfuse train`` does (same loaders, same graph builder and cache, same text join and
tokenizer) and summarises: records usable / rejected by stage and reason, elements, atoms per cell, target
statistics, text coverage, length and truncation. Nothing is trained or described.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

from crysfuse.config import Config
from crysfuse.data.cache import GraphCache, build_graphs, default_cache_dir, graph_settings
from crysfuse.data.records import Rejection, StructureRecord
from crysfuse.data.sources import load_records
from crysfuse.data.texts import join_texts
from crysfuse.text.encoder import EncoderSettings, TextEncoder


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    n = len(ordered)
    mean = sum(ordered) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in ordered) / n)

    def q(f: float) -> float:
        return ordered[min(n - 1, round(f * (n - 1)))]

    return {"n": n, "min": ordered[0], "p25": q(0.25), "median": q(0.5), "p75": q(0.75), "max": ordered[-1],
            "mean": mean, "std": std}


_SPECIFIC_RE = re.compile(r"'[^']*'|\"[^\"]*\"|-?\d+(?:\.\d+)?(?:e[-+]?\d+)?|\[[^\]]*\]")


def reason_kind(reason: str) -> str:
    """A rejection reason with its specifics (quoted names, numbers, lists) masked, for grouping."""
    return _SPECIFIC_RE.sub("…", reason.split("\n")[0])[:160]


def check_source(path: str, target: str | None, config: Config, *, limit: int | None = None,
                 graphs: bool = True) -> tuple[dict[str, Any], list[Rejection]]:
    """The summary (a JSON-able dict) and the rejections of one data source."""
    loaded = load_records(path, target, limit=limit, require_target=target is not None)
    records = loaded.records
    rejections = list(loaded.rejections)
    if graphs:
        built = build_graphs(records, graph_settings(config), GraphCache(default_cache_dir(config)))
        rejections += built.rejections
        records = [r for r in records if r.id in built.graphs]
    target_values = [r.target for r in records if not math.isnan(r.target)]
    summary = {
        "source": str(path),
        "target": target,
        "graphs_checked": graphs,
        "records_read": len(loaded.records) + len(loaded.rejections),
        "usable": len(records),
        "rejected": len(rejections),
        "rejected_by_stage": _rejections_by_stage(rejections),
        "elements": _elements(records),
        "atoms_per_cell": _stats([float(len(r.structure)) for r in records]),
        "target_stats": _stats(target_values),
        "text": _text_summary(records, config),
    }
    return summary, rejections


def _rejections_by_stage(rejections: list[Rejection]) -> dict[str, list[dict[str, Any]]]:
    by_stage: dict[str, Counter] = {}
    examples: dict[tuple[str, str], str] = {}
    for rejection in rejections:
        kind = reason_kind(rejection.reason)
        by_stage.setdefault(rejection.stage, Counter())[kind] += 1
        examples.setdefault((rejection.stage, kind), f"{rejection.id}: {rejection.reason.splitlines()[0][:200]}")
    return {
        stage: [{"count": n, "reason": kind, "example": examples[(stage, kind)]} for kind, n in kinds.most_common()]
        for stage, kinds in sorted(by_stage.items())
    }


def _elements(records: list[StructureRecord]) -> dict[str, Any]:
    elements: Counter = Counter()
    for record in records:
        elements.update({site.specie.symbol for site in record.structure} if record.structure.is_ordered
                        else {el.symbol for el in record.structure.composition.elements})
    return {"distinct": len(elements), "records_with": dict(elements.most_common())}


def _text_summary(records: list[StructureRecord], config: Config) -> dict[str, Any]:
    """Coverage, words and (when the tokenizer is available) tokens and truncation of the joined texts."""
    present = [t for t in join_texts(records, config) if t is not None and t.strip()]
    text: dict[str, Any] = {
        "with_text": len(present), "missing": len(records) - len(present),
        "missing_would_be_described_by": config.text.describer or None,
        "words": _stats([float(len(t.split())) for t in present]),
        "max_length": config.text.max_length, "encoder": config.text.encoder,
    }
    if present:
        try:
            encoder = TextEncoder(EncoderSettings(config.text.encoder, config.text.max_length))
            lengths = [float(len(encoder.tokenize_ids(t, truncate=False))) for t in present]
            text["tokens"] = _stats(lengths)
            text["truncated"] = sum(length > config.text.max_length for length in lengths)
        except Exception as err:  # noqa: BLE001 - an unavailable tokenizer must not hide the rest
            text["tokens_unavailable"] = f"{type(err).__name__}: {err}"
    return text


def _fmt(stats: dict[str, float], digits: int = 3) -> str:
    if not stats:
        return "-"
    keys = ("min", "p25", "median", "p75", "max", "mean", "std")

    def num(value: float) -> str:
        if float(value).is_integer() and abs(value) < 1e9:
            return str(int(value))
        return f"{value:.{digits}g}"

    return "  ".join(f"{k} {num(stats[k])}" for k in keys)


def format_summary(summary: dict[str, Any]) -> str:
    """The printed report."""
    lines = [f"source: {summary['source']}" + (f"  (target '{summary['target']}')" if summary["target"] else ""),
             f"records: {summary['records_read']} read, {summary['usable']} usable, {summary['rejected']} rejected"
             + ("" if summary["graphs_checked"] else "  (graphs not checked: --no-graphs)")]
    for stage, kinds in summary["rejected_by_stage"].items():
        lines.append(f"  rejected at {stage}: {sum(k['count'] for k in kinds)}")
        for kind in kinds[:8]:
            lines.append(f"    {kind['count']:>6}  {kind['reason']}")
            lines.append(f"            e.g. {kind['example']}")
        if len(kinds) > 8:
            lines.append(f"            ... and {len(kinds) - 8} more kinds of reason")
    elements = summary["elements"]
    top = ", ".join(f"{el} {n}" for el, n in list(elements["records_with"].items())[:12])
    lines.append(f"elements: {elements['distinct']} distinct; in most records: {top or '-'}")
    lines.append(f"atoms per cell: {_fmt(summary['atoms_per_cell'])}")
    target = summary["target_stats"]
    lines.append(f"target: {target.get('n', 0)} values; {_fmt(target, 4)}")
    text = summary["text"]
    described = text["missing_would_be_described_by"]
    lines.append(f"text: {text['with_text']} with text, {text['missing']} missing"
                 + (f" (described by '{described}' at training time)" if text["missing"] and described else ""))
    if text["words"]:
        lines.append(f"  words: {_fmt(text['words'])}")
    if "tokens" in text:
        lines.append(f"  tokens ({text['encoder']}): {_fmt(text['tokens'])}")
        lines.append(f"  truncated at max_length {text['max_length']}: {text['truncated']} of {text['with_text']}")
    elif "tokens_unavailable" in text:
        lines.append(f"  tokens: not counted ({text['tokens_unavailable']})")
    return "\n".join(lines)
