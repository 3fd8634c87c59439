"""``crysfuse report``: one self-contained HTML page (images embedded) for a run or a comparison directory.

The page shows whatever the directory holds: config, learning curves, gate plots and statistics, diagnosis,
robustness, comparison tables. Every string that comes from data (ids, labels, messages) is escaped; the
page has no scripts.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crysfuse import rundir
from crysfuse.analysis.comparison import (
    COMPARISON_CALIBRATION_PNG,
    COMPARISON_FOREST_PNG,
    COMPARISON_JSON,
    COMPARISON_MAE_PNG,
    COMPARISON_ROBUSTNESS_PNG,
)
from crysfuse.analysis.diagnose import spearman
from crysfuse.analysis.explain import (
    DEFAULT_CRYSTALS,
    NotExplainableError,
    explain,
    top_words,
)
from crysfuse.analysis.markup import escape_html as esc
from crysfuse.analysis.plots import (
    attention_heatmap,
    error_histogram,
    gate_vs_error,
    learning_curves,
    mae_by_group,
    parity_plot,
)
from crysfuse.analysis.words import TokenAlignmentError
from crysfuse.figures import plt
from crysfuse.fusion import FUSION
from crysfuse.io import write_text_atomic
from crysfuse.rundir.layout import (
    ATTENTION_JSON_FILE,
    CONFIG_FILE,
    DIAGNOSIS_JSON_FILE,
    GATE_PLOTS_FILE,
    ROBUSTNESS_JSON_FILE,
    ROBUSTNESS_PLOT_PREFIX,
)
from crysfuse.text.encoder import EncoderUnavailableError

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em;overflow-wrap:anywhere}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
.table-wrap{max-width:100%;overflow-x:auto}summary{overflow-wrap:anywhere}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}table.wide{font-size:.75em}
.figures{display:flex;flex-wrap:wrap;gap:.6em;align-items:flex-start}.figures img{max-width:48%}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee;margin:.4em 0}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em}.note{color:#555;font-size:.9em}
"""


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _image(png: bytes, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _image_file(path: Path, alt: str) -> str:
    return _image(path.read_bytes(), alt) if path.is_file() else ""


WIDE_TABLE_COLUMNS = 9
"""Tables with more columns get a smaller font; every table scrolls inside its own box, never the page."""


def rounded(value: float) -> str:
    """A number to the digits it means: counts and seconds (≥ 100) whole with thousands separators, smaller
    values (errors, gates, p-values) to 3 significant digits."""
    if not math.isfinite(value):
        return "–"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return esc(str(value))
    if isinstance(value, int):
        return esc(f"{value:,}")
    if isinstance(value, float):
        return esc(rounded(value))
    if isinstance(value, (list, tuple)):
        return esc(", ".join(_cell_text(v) for v in value))
    return esc("–" if value is None else value)


def _cell_text(value: Any) -> str:
    return rounded(value) if isinstance(value, float) else str(value)


def table(rows: Sequence[dict[str, Any]], columns: Iterable[str] | None = None) -> str:
    """An HTML table of ``rows`` (all values escaped)."""
    rows = list(rows)
    if not rows:
        return '<p class="note">(empty)</p>'
    columns = list(columns or dict.fromkeys(k for row in rows for k in row))
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(row.get(c))}</td>" for c in columns) + "</tr>" for row in rows)
    wide = ' class="wide"' if len(columns) > WIDE_TABLE_COLUMNS else ""
    return f'<div class="table-wrap"><table{wide}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def learning_curves_png(run_dir: Path) -> bytes | None:
    """Train/val loss and MAE per epoch from ``metrics.jsonl``."""
    rows = rundir.read_metrics(run_dir)
    if not rows:
        return None
    return _png(learning_curves(rows))


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def mae_by_target_range(predictions: Any, bins: int = 5) -> list[dict[str, Any]]:
    """MAE in ``bins`` target ranges of about equal counts (quantiles of the true values)."""
    finite = np.isfinite(predictions.target) & np.isfinite(predictions.prediction)
    target, error = predictions.target[finite], np.abs(predictions.prediction - predictions.target)[finite]
    if target.size == 0:
        return []
    edges = np.unique(np.quantile(target, np.linspace(0, 1, min(bins, target.size) + 1)))
    index = np.clip(np.searchsorted(edges, target, side="right") - 1, 0, max(len(edges) - 2, 0))
    rows = []
    for b in range(max(len(edges) - 1, 1)):
        members = index == b
        if members.any():
            low, high = edges[b], edges[min(b + 1, len(edges) - 1)]
            rows.append({"group": f"{low:.3g} – {high:.3g}", "n": int(members.sum()),
                         "mae": float(error[members].mean())})
    return rows


def prediction_section(run_dir: Path, h: str) -> str:
    """Parity plot, error histogram, MAE per target range and, for a model with gates, gate against error,
    all on the test set (``predictions_test.csv``); empty when the run has no test predictions."""
    predictions = rundir.read_predictions(run_dir, "test")
    if predictions is None or not predictions.ids:
        return ""
    ranges = mae_by_target_range(predictions)
    figures = [parity_plot([(predictions, f"test, n = {len(predictions.ids):,}")], "test set: predicted vs true"),
               error_histogram(predictions, "test set"),
               mae_by_group(ranges, xlabel="true value", title="MAE per target range (test set)")]
    if predictions.gates:
        abs_error = np.abs(predictions.prediction - predictions.target)
        rho = {key: spearman(values, abs_error)["rho"] for key, values in predictions.gates.items()}
        figures.append(gate_vs_error(predictions, rho))
    images = "".join(_image(_png(f), alt) for f, alt in zip(
        figures, ("parity plot", "error histogram", "MAE per target range", "gate vs error")))
    return (f"<{h}>Test set predictions</{h}>" + table(ranges) +
            '<p class="note">MAE per target range: true values split at their quantiles.</p>'
            f'<div class="figures">{images}</div>')


def run_sections(run_dir: Path, heading_level: int = 2, *, explain_crystals: int = 0) -> list[str]:
    """HTML sections for one run directory; ``explain_crystals`` > 0 computes the attention maps of that many
    test crystals when the run directory holds none (``crysfuse explain`` output) and the model has any."""
    h = f"h{heading_level}"
    parts = []
    summary = rundir.read_summary(run_dir) if rundir.has_summary(run_dir) else {}
    if summary:
        keys = ["fusion", "target", "seed", "val_mae", "test_mae", "n_params", "n_params_fusion", "epochs",
                "best_epoch", "train_seconds", "n_train", "n_val", "n_test", "n_rejected"]
        parts.append(f"<{h}>Summary</{h}>" + table([{k: summary.get(k) for k in keys if k in summary}]))
    curves = learning_curves_png(run_dir)
    if curves:
        parts.append(f"<{h}>Learning curves</{h}>" + _image(curves, "learning curves"))
    predictions = prediction_section(run_dir, h)
    if predictions:
        parts.append(predictions)
    attention = attention_section(run_dir, h, explain_crystals)
    if attention:
        parts.append(attention)
    statistics = rundir.read_gate_statistics(run_dir)
    if statistics or (run_dir / GATE_PLOTS_FILE).is_file():
        parts.append(f"<{h}>Gates during training</{h}>" + _gate_statistics(statistics or {})
                     + _image_file(run_dir / GATE_PLOTS_FILE, "gate trajectories"))
    for diagnosis_json in sorted(run_dir.glob(f"**/{DIAGNOSIS_JSON_FILE}")):
        parts.append(f"<{h}>Diagnosis</{h}>" + _diagnosis(diagnosis_json))
    for robustness_json in sorted(run_dir.glob(f"**/{ROBUSTNESS_JSON_FILE}")):
        data = _read_json(robustness_json)
        images = "".join(_image_file(p, p.stem)
                         for p in sorted(robustness_json.parent.glob(f"{ROBUSTNESS_PLOT_PREFIX}*.png")))
        parts.append(f"<{h}>Robustness ({esc(data.get('split', ''))} split)</{h}>" + table(data["rows"]) + images)
    config = _read_json(run_dir / CONFIG_FILE)
    if config:
        parts.append(f"<{h}>Config</{h}><pre>{esc(json.dumps(config, indent=2))}</pre>")
    return parts


def _has_attention(run_dir: Path) -> bool:
    config = _read_json(run_dir / CONFIG_FILE) or {}
    fusion = config.get("fusion") or {}
    return bool(fusion.get("middle_layers")) or (
        fusion.get("name") in FUSION.names() and bool(FUSION.get(fusion["name"]).attention_maps))


def attention_section(run_dir: Path, h: str, crystals: int) -> str:
    """Attention maps: the heatmaps and top words of ``crysfuse explain`` output found in the run directory,
    else (``crystals`` > 0 and a model with attention) computed for the first test crystals; a note when
    they cannot be computed (data or encoder not available here)."""
    found = sorted(run_dir.glob(f"**/{ATTENTION_JSON_FILE}"))
    if found:
        images = "".join(_image_file(p, p.stem) for p in sorted(found[0].parent.glob("attention_*.png")))
        rows = [row for crystal in (_read_json(found[0]) or {}).get("crystals", [])
                for name, m in crystal.get("maps", {}).items()
                for row in _top_rows(crystal["id"], name, m.get("top", []))]
        return (f"<{h}>Attention maps</{h}>" + _attention_note() + table(rows[:60])
                + f'<div class="figures">{images}</div>')
    if crystals <= 0 or not _has_attention(run_dir):
        return ""
    try:
        explanations = explain(run_dir, n=crystals)
    # data errors (DataSourceError, CheckpointError, SplitError) are ValueErrors; a missing file an OSError
    except (NotExplainableError, TokenAlignmentError, EncoderUnavailableError, OSError, ValueError) as err:
        return f'<{h}>Attention maps</{h}><p class="note">not computed: {esc(err)}</p>'
    images = "".join(_image(_png(attention_heatmap(e)), f"attention {e.id}") for e in explanations)
    rows = [row for e in explanations for m in e.maps for row in _top_rows(e.id, m.name, top_words(e, m, k=3))]
    return (f"<{h}>Attention maps</{h}>" + _attention_note() + table(rows[:60])
            + f'<div class="figures">{images}</div>')


def _attention_note() -> str:
    return ('<p class="note">The model\'s own attention weights (head-averaged) of the first test crystals: rows '
            "are atoms (element + index) or the pooled graph/text vector, columns the words of the description "
            "(word pieces summed). Top words per query below; all weights in <code>crysfuse explain</code>'s "
            "<code>attention.json</code>.</p>")


def _top_rows(record_id: str, name: str, top: list[dict[str, Any]]) -> list[dict[str, Any]]:
    grouped: dict[str, list[str]] = {}
    for row in top:
        grouped.setdefault(row["query"], []).append(f"{row['word']} ({row['weight']:.3f})")
    return [{"id": record_id, "map": name, "query": query, "top words": ", ".join(words)}
            for query, words in list(grouped.items())[:8]]


def _gate_statistics(statistics: dict[str, Any]) -> str:
    rows = []
    for gate, values in (statistics.get("gates") or {}).items():
        for period in ("training", "last_epoch"):
            numbers = values.get(period) or {}
            row = {"gate": gate, "period": period, **{k: numbers.get(k) for k in ("mean", "std", "min", "max")}}
            distribution = values.get("last_epoch_distribution") if period == "last_epoch" else None
            if distribution:  # monitors since issue 16: the shape of the last epoch's gate
                row["median"] = (distribution.get("quantiles") or {}).get("q50")
                row["shape"] = _shape(distribution)
            rows.append(row)
    warnings = statistics.get("warnings") or []
    listed = "".join(f"<li>{esc(w.get('message', w))}</li>" for w in warnings[:50])
    return table(rows) + (f"<p>{len(warnings)} monitor warning(s):</p><ul>{listed}</ul>" if warnings else "")


def _diagnosis(path: Path) -> str:
    report = _read_json(path) or {}
    recommendations = "".join(
        f"<li><b>{_code(esc(r.get('action', '')))}</b>: {_code(esc(r.get('reason', '')))}</li>"
        for r in report.get("recommendations", [])
    )
    notes = "".join(f'<p class="note">{_code(esc(note))}</p>' for note in report.get("notes") or [])
    metrics = report.get("metrics") or {}
    metric_rows = [{"condition": k, **v} for k, v in metrics.items() if isinstance(v, dict)]
    by_class = report.get("by_class") or {}
    class_rows = [{"class": name, **{k: v for k, v in values.items()}} for name, values in by_class.items()]
    classes = (f'<p class="note">MAE per class ({esc(report.get("class_rule") or "")}), with clean text and '
               f"with all text deleted:</p>" + table(class_rows)) if class_rows else ""
    images = "".join(_image_file(p, p.stem) for p in sorted(path.parent.glob("*.png")))
    return f"<ul>{recommendations}</ul>" + notes + table(metric_rows) + classes + images


def _shape(distribution: dict[str, Any]) -> str:
    """``one mode``, or the two levels of a switch (by modes or by class)."""
    switch = distribution.get("switch")
    if not switch:
        return "one mode"
    if switch.get("by") == "classes":
        return f"switch: {switch['low_name']} {switch['low']:.3f} / {switch['high_name']} {switch['high']:.3f}"
    return f"two modes: {switch['low']:.3f} ({switch['low_fraction']:.0%}) / {switch['high']:.3f}"


def _code(escaped: str) -> str:
    """Render `backticked` spans of already-escaped text as <code>."""
    return re.sub(r"`([^`<>]+)`", r"<code>\1</code>", escaped)


def comparison_sections(directory: Path) -> list[str]:
    """HTML sections for a comparison directory (``comparison.json`` + plots + its runs)."""
    data = _read_json(directory / COMPARISON_JSON)
    # n (seeds per variant) is shown; the list of seed numbers ("0" for one seed reads like a count) is not
    columns = ["rank", "label", "n", "val_mae_mean", "val_mae_std", "test_mae_mean", "test_mae_std"]
    extra = [c for c in dict.fromkeys(k for r in data["rows"] for k in r) if c not in columns + ["seeds"]]
    parts = [
        f"<h2>Comparison (baseline: {esc(data['baseline'])})</h2>" + table(data["rows"], columns + extra),
        '<p class="note">Ranked by validation MAE; the test split is only reported.</p>',
        _image_file(directory / COMPARISON_MAE_PNG, "MAE per variant"),
        _image_file(directory / COMPARISON_FOREST_PNG, "paired differences to the baseline"),
        _image_file(directory / COMPARISON_ROBUSTNESS_PNG, "robustness curves"),
        _image_file(directory / COMPARISON_CALIBRATION_PNG, "ensemble calibration"),
    ]
    for run in data.get("runs", []):
        run_dir = Path(run)
        if run_dir.is_dir():
            parts.append(f"<details><summary>{esc(run_dir)}</summary>{''.join(run_sections(run_dir, 3))}</details>")
    return parts


def write_report(directory: str | Path, out: str | Path, *, explain_crystals: int = DEFAULT_CRYSTALS) -> Path:
    """Write the HTML page for a run or comparison directory; raises ``ValueError`` for anything else.

    For a run whose model has attention maps, the page shows them for ``explain_crystals`` test crystals
    (computed unless the run directory holds ``crysfuse explain`` output; 0 turns this off)."""
    directory = Path(directory)
    if (directory / COMPARISON_JSON).is_file():
        title, parts = f"crysfuse comparison: {directory.name}", comparison_sections(directory)
    elif rundir.has_summary(directory) or (directory / CONFIG_FILE).is_file():
        title, parts = f"crysfuse run: {directory.name}", run_sections(directory, explain_crystals=explain_crystals)
    else:
        raise ValueError(f"{directory} is neither a run directory nor a comparison directory")
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{esc(title)}</h1>{''.join(parts)}</body></html>")
    write_text_atomic(Path(out), page)
    return Path(out)
