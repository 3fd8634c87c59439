"""Tables for docs/results.md from a finished study directory (outputs of `crysfuse compare` and
`crysfuse diagnose`).

    python scripts/results_tables.py results/mp36k_study > /tmp/tables.md

Reads ``<study>/all/comparison_robustness.csv`` and ``<study>/vs_<baseline>/comparison.csv`` (written by
``crysfuse compare``), the run directories under
``<study>/runs/<label>/seed<k>/`` (``predictions_test.csv``, ``gate_statistics.json``) and the diagnoses under
``<study>/diagnosis/<label>/seed<k>/diagnosis.json``; prints Markdown tables on standard output and writes
``<study>/all/gated_diagnosis.csv`` and ``<study>/all/runs.csv``. Nothing here trains or evaluates a model.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

SATURATION = (0.05, 0.95)
CORRUPTIONS = [("delete", 0.5), ("delete", 1.0), ("mask", 0.5), ("mask", 1.0)]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def mean_std(values: list[float]) -> str:
    array = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if array.size == 0:
        return "–"
    std = array.std(ddof=1) if array.size > 1 else 0.0
    return f"{array.mean():.3f} ± {std:.3f}"


def corruption_names() -> list[str]:
    return [f"{mode} {int(ratio * 100)} %" for mode, ratio in CORRUPTIONS]


def _mean_spread(row: dict[str, str]) -> str:
    """``mean ± std``, or the mean alone for one seed (no spread: an empty std)."""
    mean = f"{float(row['mae_mean']):.4f}"
    return f"{mean} ± {float(row['mae_std']):.4f}" if row.get("mae_std") else mean


def robustness_table(curves: list[dict[str, str]]) -> str:
    """Test MAE per variant: clean and under each corruption (mean ± std over seeds)."""
    by_key = {(r["label"], r["mode"], float(r["ratio"])): r for r in curves}
    labels = sorted({r["label"] for r in curves},
                    key=lambda lab: float(by_key[(lab, "delete", 0.0)]["mae_mean"]))
    header = "| variant | clean | " + " | ".join(corruption_names()) + " |"
    lines = [header, "|" + "---|" * (2 + len(CORRUPTIONS))]
    for label in labels:
        cells = [_mean_spread(by_key[(label, "delete", 0.0)])]
        for mode, ratio in CORRUPTIONS:
            row = by_key.get((label, mode, ratio))
            cells.append(_mean_spread(row) if row else "–")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gate_table(curves: list[dict[str, str]]) -> str:
    """Mean gate values per variant and gate: clean and under each corruption (mean ± std over seeds)."""
    by_key = {(r["label"], r["mode"], float(r["ratio"])): r for r in curves}
    gate_columns = sorted({k for r in curves for k in r if k.startswith("gate_") and not k.endswith("_std")})
    header = "| variant | gate | clean | " + " | ".join(corruption_names()) + " |"
    lines = [header, "|" + "---|" * (3 + len(CORRUPTIONS))]
    for label in sorted({r["label"] for r in curves}):
        for column in gate_columns:
            clean = by_key[(label, "delete", 0.0)]
            if not clean.get(column):
                continue
            cells = []
            for mode, ratio in [("delete", 0.0), *CORRUPTIONS]:
                row = by_key.get((label, mode, ratio))
                cells.append(f"{float(row[column]):.3f} ± {float(row[column + '_std']):.3f}" if row else "–")
            lines.append(f"| {label} | `{column[len('gate_'):]}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def saturation(predictions: Path, key: str) -> float | None:
    """Fraction of test crystals whose gate ``key`` lies outside [0.05, 0.95]."""
    rows = read_csv(predictions)
    if not rows or key not in rows[0]:
        return None
    values = np.asarray([float(r[key]) for r in rows])
    return float(np.mean((values < SATURATION[0]) | (values > SATURATION[1])))


def gated_diagnosis(study: Path, labels: list[str]) -> tuple[str, list[dict]]:
    """Per seed of each label: gate means (clean / all text deleted), saturation, text effect, monitor
    warnings and the diagnosis' first recommendation."""
    records = []
    for label in labels:
        for diagnosis_file in sorted((study / "diagnosis" / label).glob("seed*/diagnosis.json")):
            seed = diagnosis_file.parent.name
            report = json.loads(diagnosis_file.read_text(encoding="utf-8"))
            run_dir = study / "runs" / label / seed
            stats = json.loads((run_dir / "gate_statistics.json").read_text(encoding="utf-8"))
            effect = report["text_effect"]
            record = {"label": label, "seed": seed, "mae_clean": effect["mae_clean"],
                      "mae_text_deleted": effect["mae_text_deleted"], "delta_mae": effect["delta_mae"],
                      "ci95_low": effect["ci95"][0], "ci95_high": effect["ci95"][1],
                      "recommendation": report["recommendations"][0]["action"],
                      "monitor_warnings": json.dumps(stats.get("warnings_by_rule", {}), sort_keys=True)}
            for key in ("effective", "quality", "fusion"):
                gate = report["gates"].get(key)
                if gate is None:
                    continue
                record[f"{key}_clean"] = gate["clean"]["mean"]
                record[f"{key}_text_deleted"] = gate["text_deleted"]["mean"]
                record[f"{key}_saturated"] = saturation(run_dir / "predictions_test.csv", key)
                record[f"{key}_spearman_abs_error"] = gate["spearman_abs_error"]["rho"]
            records.append(record)
    header = ("| run | seed | effective (clean → no text) | quality (clean → no text) "
              "| fusion (clean → no text) | saturated (eff / q / f) | MAE clean → no text | Δ (95 % CI) "
              "| diagnose says | monitor warnings |")
    lines = [header, "|" + "---|" * 10]
    for r in records:
        def pair(key: str, r: dict = r) -> str:
            return f"{r[f'{key}_clean']:.3f} → {r[f'{key}_text_deleted']:.3f}" if f"{key}_clean" in r else "–"
        saturated = " / ".join(f"{r[f'{k}_saturated']:.0%}" if r.get(f"{k}_saturated") is not None else "–"
                               for k in ("effective", "quality", "fusion"))
        lines.append(
            f"| {r['label']} | {r['seed'][4:]} | {pair('effective')} | {pair('quality')} | "
            f"{pair('fusion')} | "
            f"{saturated} | {r['mae_clean']:.4f} → {r['mae_text_deleted']:.4f} | {r['delta_mae']:+.4f} "
            f"[{r['ci95_low']:+.4f}, {r['ci95_high']:+.4f}] | {r['recommendation']} | "
            f"{r['monitor_warnings'].replace('|', '/')} |")
    return "\n".join(lines), records


def paired_table(study: Path, baselines: list[str]) -> str:
    """Test-MAE differences against each baseline (``<study>/vs_<baseline>/comparison.csv``): mean Δ over
    seeds, bootstrap 95 % interval, paired t-test (raw and Holm-adjusted across the variants compared with
    that baseline) and bootstrap p-values."""
    tables = {b: {r["label"]: r for r in read_csv(study / f"vs_{b}" / "comparison.csv")} for b in baselines}
    header = "| variant | " + " | ".join(f"Δ test vs {b} | 95 % CI | p (seeds) | p (Holm) | p (bootstrap)"
                                         for b in baselines)
    lines = [header + " |", "|" + "---|" * (1 + 5 * len(baselines))]

    def number(value: str, fmt: str) -> str:
        return "–" if not value else format(float(value), fmt)

    for label in tables[baselines[0]]:
        cells = []
        for baseline in baselines:
            row, prefix = tables[baseline][label], f"vs_{baseline}_"
            ci = row.get(prefix + "bootstrap_ci", "")
            cells += [number(row.get(prefix + "delta_test_mae", ""), "+.4f"),
                      "[" + ", ".join(format(float(v), "+.4f") for v in ci.split()) + "]" if ci else "–",
                      number(row.get(prefix + "p_seeds", ""), ".3f"),
                      number(row.get(prefix + "p_seeds_holm", ""), ".3f"),
                      number(row.get(prefix + "p_bootstrap", ""), ".3f")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_run_csv(study: Path) -> None:
    """``<study>/all/runs.csv``: one line per run (label, seed, val/test MAE, best epoch, seconds)."""
    fields = ["label", "seed", "val_mae", "test_mae", "best_epoch", "epochs", "train_seconds", "n_params",
              "n_params_fusion", "n_train", "n_val", "n_test"]
    rows = []
    for summary_file in sorted(study.glob("runs/*/seed*/summary.json")):
        summary = json.loads(summary_file.read_text(encoding="utf-8"))
        rows.append({"label": summary_file.parent.parent.name, **{k: summary.get(k) for k in fields[1:]}})
    with open(study / "all" / "runs.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def main(study: Path) -> None:
    per_run_csv(study)
    curves = read_csv(study / "all" / "comparison_robustness.csv")
    baselines = [b for b in ("gated", "cross_attention") if (study / f"vs_{b}" / "comparison.csv").is_file()]
    if baselines:
        print("## Paired differences\n")
        print(paired_table(study, baselines))
        print()
    print("## Robustness (test MAE)\n")
    print(robustness_table(curves))
    print("\n## Gates under corrupted text\n")
    print(gate_table(curves))
    labels = sorted(p.name for p in (study / "diagnosis").iterdir() if p.is_dir()) if (
        study / "diagnosis").is_dir() else []
    if labels:
        table, records = gated_diagnosis(study, labels)
        print("\n## Diagnosis\n")
        print(table)
        columns = list(dict.fromkeys(k for r in records for k in r))
        with open(study / "all" / "gated_diagnosis.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(records)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
