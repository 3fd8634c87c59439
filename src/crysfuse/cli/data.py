"""``crysfuse data check PATH``: what a data source holds and what training would make of it.

Reads the source as ``crysfuse train`` does (same loaders, same graph builder and cache, same text join and
tokenizer) and prints: records usable / rejected by stage and reason, elements, atoms per cell, target
statistics, text coverage, length and truncation. Nothing is trained or described.
"""

from __future__ import annotations

import argparse
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

from crysfuse.config import Config


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="inspect data sources (crysfuse data check PATH)")
    actions = parser.add_subparsers(dest="data_command", required=True)
    check = actions.add_parser("check", help="summarise a data source: usable/rejected records, elements, "
                                             "atoms, target, text length and truncation")
    check.add_argument("path", help="data source: JSON(.gz), CGCNN or CrysMMNet folder, CSV/JSONL/Parquet table, "
                                    "or jarvis:<dataset>")
    check.add_argument("--target", help="target key / column (default: the config's data.target; none: no target)")
    check.add_argument("--limit", type=int, help="check only the first N records")
    check.add_argument("--text-file", help="descriptions joined by id (as for crysfuse train)")
    check.add_argument("--cache-dir", help="graph cache (as for crysfuse train)")
    check.add_argument("--no-graphs", action="store_true", help="skip building graphs (faster; fewer checks)")
    check.add_argument("--rejections", help="write the rejection manifest (id,stage,reason) to this CSV")
    check.add_argument("--json", help="also write the summary as JSON to this file")
    check.add_argument("--config", help="YAML/JSON config (graph settings, text encoder and max_length)")
    check.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.set_defaults(func=run)


def _config(args: argparse.Namespace) -> Config:
    config = Config.load(args.config) if args.config else Config()
    overrides = list(args.set)
    for flag, key in (("text_file", "data.text_file"), ("cache_dir", "data.cache_dir")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}='" + str(value).replace("'", "''") + "'")
    return config.with_overrides(overrides) if overrides else config


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
                 graphs: bool = True) -> tuple[dict[str, Any], list]:
    """The summary (a JSON-able dict) and the rejections of one data source."""
    from crysfuse.data.cache import GraphCache
    from crysfuse.data.pipeline import build_graphs, default_cache_dir, graph_settings
    from crysfuse.data.sources import load_records
    from crysfuse.data.text_files import read_text_file

    loaded = load_records(path, target, limit=limit, require_target=target is not None)
    records = loaded.records
    rejections = list(loaded.rejections)
    if graphs:
        built, graph_rejections = build_graphs(records, graph_settings(config), GraphCache(default_cache_dir(config)))
        rejections += graph_rejections
        records = [r for r in records if r.id in built]

    by_stage: dict[str, Counter] = {}
    examples: dict[tuple[str, str], str] = {}
    for rejection in rejections:
        kind = reason_kind(rejection.reason)
        by_stage.setdefault(rejection.stage, Counter())[kind] += 1
        examples.setdefault((rejection.stage, kind), f"{rejection.id}: {rejection.reason.splitlines()[0][:200]}")

    elements: Counter = Counter()
    for record in records:
        elements.update({site.specie.symbol for site in record.structure} if record.structure.is_ordered
                        else {el.symbol for el in record.structure.composition.elements})
    texts = [r.text for r in records]
    if config.data.text_file:
        joined = read_text_file(config.data.text_file)
        texts = [t if t is not None else joined.get(r.id) for t, r in zip(texts, records)]
    present = [t for t in texts if t is not None and t.strip()]
    text: dict[str, Any] = {
        "with_text": len(present), "missing": len(texts) - len(present),
        "missing_would_be_described_by": config.text.describer or None,
        "words": _stats([float(len(t.split())) for t in present]),
        "max_length": config.text.max_length, "encoder": config.text.encoder,
    }
    if present:
        try:
            from crysfuse.text.encoder import EncoderSettings, TextEncoder

            encoder = TextEncoder(EncoderSettings(config.text.encoder, config.text.max_length))
            lengths = [float(len(encoder.tokenize_ids(t, truncate=False))) for t in present]
            text["tokens"] = _stats(lengths)
            text["truncated"] = sum(length > config.text.max_length for length in lengths)
        except Exception as err:  # noqa: BLE001 - an unavailable tokenizer must not hide the rest
            text["tokens_unavailable"] = f"{type(err).__name__}: {err}"

    target_values = [r.target for r in records if not math.isnan(r.target)]
    summary = {
        "source": str(path),
        "target": target,
        "graphs_checked": graphs,
        "records_read": len(loaded.records) + len(loaded.rejections),
        "usable": len(records),
        "rejected": len(rejections),
        "rejected_by_stage": {
            stage: [{"count": n, "reason": kind, "example": examples[(stage, kind)]} for kind, n in kinds.most_common()]
            for stage, kinds in sorted(by_stage.items())
        },
        "elements": {"distinct": len(elements), "records_with": dict(elements.most_common())},
        "atoms_per_cell": _stats([float(len(r.structure)) for r in records]),
        "target_stats": _stats(target_values),
        "text": text,
    }
    return summary, rejections


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


def run(args: argparse.Namespace) -> int:
    config = _config(args)
    target = args.target if args.target is not None else (config.data.target or None)
    summary, rejections = check_source(args.path, target, config, limit=args.limit, graphs=not args.no_graphs)
    print(format_summary(summary))
    if args.rejections:
        from crysfuse.training.run import write_rejections

        write_rejections(Path(args.rejections), rejections)
        print(f"rejection manifest: {args.rejections}")
    if args.json:
        from crysfuse.io import write_json_atomic

        write_json_atomic(Path(args.json), summary)
    return 0 if summary["usable"] else 1
