"""``diagnosis.md``: the report of ``crysfuse diagnose`` as readable tables, recommendation first.

Every untrusted string (record ids, elements, crystal systems, gate keys, messages) is escaped for Markdown and
HTML.
"""

from __future__ import annotations

from typing import Any

from crysfuse.analysis.markup import escape_markdown as md
from crysfuse.rundir.layout import DIAGNOSIS_PLOT_FILES

__all__ = ["md", "render_markdown"]


def _num(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else md(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_num(c) for c in row) + " |" for row in rows] + [""]


def render_markdown(report: dict[str, Any]) -> str:
    """``diagnosis.md``: every untrusted string (ids, elements, systems, gate keys) is escaped."""
    out = [f"# Diagnosis of {md(report['run'])}", "",
           f"{report['n_samples']} samples of the {md(report['split'])} split; the model "
           + f"{'uses' if report['uses_text'] else 'does not use'} text.", "", "## Recommendation", ""]
    out += [f"- **{r['action']}**: {md(r['reason'])}" for r in report["recommendations"]] + [""]
    out += [f"Note: {md(note)}" for note in report.get("notes", [])] + ["", "## Metrics", ""]
    metrics = report["metrics"]
    out += _table(["", "MAE", "RMSE", "R²", "max error"],
                  [[name, *(metrics[key][m] for m in ("mae", "rmse", "r2", "max_error"))]
                   for name, key in (("clean text", "clean"), ("all text deleted", "text_deleted"))])
    if report["gates"]:
        out += ["## Gates", ""]
        out += _table(["gate", "text", "mean", "std", "min", "max", "Spearman ρ vs abs. error"],
                      [[key, label, *(g[k][s] for s in ("mean", "std", "min", "max")),
                        g["spearman_abs_error"]["rho"] if k == "clean" else ""]
                       for key, g in report["gates"].items()
                       for k, label in (("clean", "clean"), ("text_deleted", "deleted"))])
        out += ["## Gate distributions (clean text)", ""] + _distribution_table(report["gates"])
    gate_keys = list(report["gates"])
    if report.get("by_class"):
        out += ["## By class", "", f"Class rule: {md(report['class_rule'])}.", ""]
        out += _table(["class", "n", "MAE clean", "MAE text deleted", "Δ", *gate_keys],
                      [[name, c["n"], c["mae_clean"], c["mae_text_deleted"], c["delta_mae"],
                        *(c[k] for k in gate_keys)] for name, c in report["by_class"].items()])
    for title, key in (("By crystal system", "by_crystal_system"), ("By element (15 most frequent)", "by_element")):
        rows = [[name, v["n"], v["mae"], *(v[k] for k in gate_keys)] for name, v in report[key].items()][:15]
        out += [f"## {title}", ""] + _table(["group", "n", "MAE", *gate_keys], rows)
    stability, by_rule = report["stability"], report["stability"]["monitor_warnings_by_rule"]
    out += ["## Training stability", "", f"{stability['epochs']} epochs; "
            + ("; ".join(md(r) for r in stability["reasons"]) if stability["unstable"] else "no instability found")
            + ". Monitor warnings by rule: " + md(", ".join(f"{k}: {v}" for k, v in by_rule.items()) if by_rule
                                                  else "none" if by_rule is not None else "no gate_statistics.json")
            + ".", ""]
    if report["findings"]:
        out += ["## Gate rules on the evaluated samples", ""] + [f"- {md(f['message'])}" for f in report["findings"]]
        out += [""]
    out += ["## Largest errors", ""] + _table(["id", "target", "prediction", "abs. error"],
                                              [[e["id"], e["target"], e["prediction"], e["abs_error"]]
                                               for e in report["largest_errors"]])
    out += ["Plots: " + ", ".join(f"`{name}`" for name in DIAGNOSIS_PLOT_FILES), ""]
    return "\n".join(out)


def _distribution_table(gates: dict[str, Any]) -> list[str]:
    """Quantiles, bimodality coefficient, the two-group split and the verdict of every gate."""
    rows = []
    for key, gate in gates.items():
        d = gate.get("distribution") or {}
        q, split, switch = d.get("quantiles") or {}, d.get("split") or {}, d.get("switch")
        groups = (f"{split['low_mean']:.3f} ({split['low_fraction']:.0%}) / {split['high_mean']:.3f}"
                  if split.get("low_mean") is not None else "–")
        verdict = "one mode" if switch is None else f"switch ({'classes' if switch['by'] == 'classes' else 'two modes'})"
        rows.append([key, *(q.get(n, "–") for n in ("q05", "q25", "q50", "q75", "q95")),
                     d.get("bimodality_coefficient") if d.get("bimodality_coefficient") is not None else "–",
                     groups, split.get("separation") if split.get("separation") is not None else "–", verdict])
    return _table(["gate", "q05", "q25", "q50", "q75", "q95", "bimodality coeff.", "two groups: low (share) / high",
                   "Ashman's D", "verdict"], rows)
