"""The numbers on the results pages are regenerated from committed files and must not drift: each table is
recomputed by the script that made it, from the committed run directories, and compared with the committed
JSON and with the table printed on the page.

docs/parity.md (issue 18, and the parity check at the top of docs/results.md): ``scripts/run_table.py`` over
``docs/parity/<slice>/runs`` (summary, config and metrics of every finished crysfuse run) and the reference
ALIGNN summary ``docs/parity/reference_<target>.json``; docs/results.md opens with the same numbers.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PARITY_SLICES = [("gap", "reference_gap_pbe.json", "ablation_gap.json"),
                 ("e_form", "reference_e_form.json", "ablation_e_form.json")]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("folder", "reference", "table"), PARITY_SLICES, ids=[s[0] for s in PARITY_SLICES])
def test_parity_tables_regenerate_from_the_committed_runs(folder, reference, table, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # the committed JSON records paths relative to the repository root
    out = tmp_path / table
    _script("run_table").main(["--reference", f"reference=docs/parity/{reference}",
                               "--runs-root", f"docs/parity/{folder}/runs", "--baseline", "reference",
                               "--out", str(out)])
    printed = capsys.readouterr().out
    committed = json.loads((REPO / "docs" / "parity" / table).read_text(encoding="utf-8"))
    assert json.loads(out.read_text(encoding="utf-8")) == committed, (
        f"docs/parity/{table} is not what scripts/run_table.py makes of the committed runs; regenerate it "
        "(docs/parity.md, 'Ablation plan') and update the page")
    page = (REPO / "docs" / "parity.md").read_text(encoding="utf-8")
    rows = [line for line in printed.splitlines() if line.startswith("| ") and not line.startswith("| group")]
    assert rows and all(row in page for row in rows), "docs/parity.md does not show the regenerated table"


def _parity_cell(stats: dict) -> str:
    return f"{stats['test_mae_mean']:.4f} ± {stats['test_mae_std']:.4f} ({stats['n']} seeds)"


def test_the_parity_check_on_the_results_page_is_the_committed_parity_table():
    """docs/results.md opens with the parity check: its numbers are docs/parity/ablation_<slice>.json's."""
    page = (REPO / "docs" / "results.md").read_text(encoding="utf-8")
    for folder, _, table in PARITY_SLICES:
        groups = json.loads((REPO / "docs" / "parity" / table).read_text(encoding="utf-8"))
        reference, crysfuse = groups["reference"]["stats"], groups["graph_only"]["stats"]
        change = 100.0 * (crysfuse["test_mae_mean"] - reference["test_mae_mean"]) / reference["test_mae_mean"]
        row = f"| {_parity_cell(reference)} | {_parity_cell(crysfuse)} | {change:+.1f} % |".replace("-", "−")
        assert row in page.replace("-", "−"), f"docs/results.md: the {folder} parity row should end with {row}"


STUDY = REPO / "docs" / "results" / "study"
STUDY_COMPARISONS = sorted(STUDY.glob("*/comparison.json"))
COMPARED_COLUMNS = ("n", "val_mae_mean", "val_mae_std", "test_mae_mean", "test_mae_std")


@pytest.mark.parametrize("comparison", STUDY_COMPARISONS, ids=[p.parent.name for p in STUDY_COMPARISONS])
def test_study_comparisons_regenerate_from_the_committed_runs(comparison, monkeypatch):
    """Each study matrix's comparison (docs/results/study/<matrix>/comparison.*, written by ``crysfuse
    compare``) is what its committed run directories give — summaries, gzipped per-crystal predictions,
    robustness rows — and every row of its Markdown table is on docs/results.md."""
    from crysfuse.analysis.comparison import comparison_markdown, read_run, summarize

    monkeypatch.chdir(REPO)  # comparison.json lists the run directories relative to the repository root
    committed = json.loads(comparison.read_text(encoding="utf-8"))
    rows = summarize([read_run(run) for run in committed["runs"]], committed["baseline"])
    by_label = {row["label"]: row for row in committed["rows"]}
    assert sorted(by_label) == sorted(row["label"] for row in rows)
    prefix = f"vs_{committed['baseline']}_"
    for row in rows:
        old = by_label[row["label"]]
        for key in [*COMPARED_COLUMNS, *(k for k in row if k.startswith((prefix, "test_mae_")))]:
            expected = row[key]
            if isinstance(expected, (int, float, list)):
                expected = pytest.approx(expected, rel=1e-6, abs=1e-9, nan_ok=True)
            assert old.get(key) == expected, (row["label"], key)
    page = (REPO / "docs" / "results.md").read_text(encoding="utf-8")
    lines = comparison_markdown(rows, committed["baseline"]).splitlines()
    first_table = lines[:lines.index("")] if "" in lines else lines  # the comparison; the ensemble table follows
    table = [line for line in first_table if line.startswith("|")]
    missing = [line for line in table if line not in page]
    assert len(table) > 2 and not missing, (
        f"docs/results.md lacks these rows of {comparison.parent.name}'s table: {missing[:2]}")
    assert "\n".join(table) in page, f"{comparison.parent.name}'s table is on docs/results.md, but not as one block"


def test_the_study_compute_table_regenerates_from_the_committed_runs(tmp_path, monkeypatch, capsys):
    """docs/results/study/compute.json (cells finished of each study matrix, training time used) is what
    ``scripts/study_compute.py`` makes of the committed run directories, and docs/results.md shows its table."""
    monkeypatch.chdir(REPO)  # matrix outputs are addressed relative to the repository root
    out = tmp_path / "compute.json"
    _script("study_compute").main(["--out", str(out)])
    printed = capsys.readouterr().out
    committed = json.loads((REPO / "docs" / "results" / "study" / "compute.json").read_text(encoding="utf-8"))
    assert json.loads(out.read_text(encoding="utf-8")) == committed, (
        "docs/results/study/compute.json is stale: run python scripts/study_compute.py "
        "--out docs/results/study/compute.json and update docs/results.md")
    page = (REPO / "docs" / "results.md").read_text(encoding="utf-8")
    rows = [line for line in printed.splitlines() if line.startswith("| ") and not line.startswith("| matrix")]
    missing = [row for row in rows if row not in page]
    assert rows and not missing, f"docs/results.md lacks these rows of the compute table: {missing[:2]}"


STUDY_PROSE_START, STUDY_PROSE_END = "## The study at scale", "## In short (Phase 0)"
PROSE_NUMBER = re.compile(r"(?<![\w.,])[−+-]?\d+\.\d{2,}(?![\w.])")
PHASE0_TABLE = REPO / "docs" / "results" / "comparison_vs_graph_only.csv"


def _study_prose(page: str) -> list[str]:
    """The prose lines of the page's study section: no table rows, no code blocks."""
    section = page[page.index(STUDY_PROSE_START):page.index(STUDY_PROSE_END)]
    lines, in_code = [], False
    for line in section.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and not line.startswith("|"):
            lines.append(line)
    return lines


def _phase0_numbers() -> list[float]:
    """Phase 0's comparison (quoted by the study section as the earlier setting's result)."""
    with open(PHASE0_TABLE, newline="", encoding="utf-8") as handle:
        cells = [value for row in csv.DictReader(handle) for value in row.values()]
    numbers = []
    for value in cells:
        try:
            numbers.append(float(value))
        except (TypeError, ValueError):
            continue
    return numbers


def test_every_number_in_the_study_prose_comes_from_the_committed_files(monkeypatch):
    """Each decimal number that the prose of the study section quotes (an MAE, a difference, an interval
    bound, a p-value, a loss with the text deleted, a seed spread) is, rounded as the page rounds it, one of
    the facts ``scripts/study_facts.py`` reads from the committed comparisons and run directories — so a prose
    number left behind when the tables are regenerated fails here."""
    monkeypatch.chdir(REPO)  # comparison.json lists the run directories relative to the repository root
    facts = [*_script("study_facts").study_facts(STUDY).values(), *_phase0_numbers()]
    page = (REPO / "docs" / "results.md").read_text(encoding="utf-8")
    quoted = [(match.group(), line) for line in _study_prose(page) for match in PROSE_NUMBER.finditer(line)]
    assert quoted, "the study section quotes no numbers: has its heading changed?"
    untraced = []
    for number, line in quoted:
        digits = number.lstrip("+-−")
        decimals = len(digits.split(".")[1])
        if not any(f"{abs(fact):.{decimals}f}" == digits for fact in facts):
            untraced.append((number, line.strip()[:100]))
    assert not untraced, f"numbers in the study prose that no committed file gives (stale?): {untraced}"
