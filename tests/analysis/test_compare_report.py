"""`crysfuse compare` (matrix, resume, summary of existing runs) and `crysfuse report` in real Chromium."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest

from crysfuse.cli import main
from tests.conftest import SHARED_DATA, TINY_MODEL, chromium_or_skip

HOSTILE = '"><img src=x onerror=alert(1)><script>alert("x")</script>'


@pytest.fixture(scope="module")
def matrix_out(tmp_path_factory, mp36k_slice, cache_dir):
    out = tmp_path_factory.mktemp("compare")
    settings = TINY_MODEL + [f"data.path='{mp36k_slice}'", "data.target='gap pbe'", f"data.cache_dir='{cache_dir}'",
                             f"data.text_file='{SHARED_DATA / 'mp36k.desc_jarvis.jsonl.gz'}'", "train.epochs=2"]
    matrix = {
        "set": settings,
        "variants": ["graph_only", "simplified"],
        "seeds": [0, 1],
        "robustness": {"strategies": ["random_word"], "modes": ["delete"], "ratios": [0, 1.0], "split": "test"},
    }
    path = out / "matrix.yaml"
    path.write_text(json.dumps(matrix))  # JSON is YAML
    assert main(["compare", "--matrix", str(path), "--out", str(out / "result"), "--jobs", "2"]) == 0
    return out


def test_matrix_writes_the_comparison(matrix_out):
    result = matrix_out / "result"
    with open(result / "comparison.csv", newline="") as handle:
        rows = {row["label"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"graph_only", "simplified"}
    simplified = rows["simplified"]
    assert simplified["seeds"] == "0 1"
    assert float(simplified["test_mae_std"]) >= 0
    assert simplified["vs_graph_only_n_pairs"] == "2"
    assert simplified["vs_graph_only_p_seeds"] != "" and simplified["vs_graph_only_p_bootstrap"] != ""
    # one comparison with the baseline: the Holm correction leaves its p-value as it is
    assert float(simplified["vs_graph_only_p_seeds_holm"]) == pytest.approx(float(simplified["vs_graph_only_p_seeds"]))
    assert float(rows["graph_only"]["deleted_text_mae_mean"]) == pytest.approx(
        float(rows["graph_only"]["test_mae_mean"]), rel=1e-6)  # graph_only ignores text
    assert float(simplified["robustness_clean_mae_mean"]) == pytest.approx(float(simplified["test_mae_mean"]), rel=1e-4)
    # the two seeds of each variant as an ensemble: how well their spread ranks the test errors
    assert -1 <= float(simplified["spread_error_spearman"]) <= 1 and float(simplified["mean_spread"]) > 0
    assert float(simplified["ensemble_mae"]) > 0 and (result / "comparison_calibration.png").stat().st_size > 1000
    markdown = (result / "comparison.md").read_text()
    assert "Uncertainty: each variant's seeds as an ensemble" in markdown
    assert " ± " in markdown and "Ranked by validation MAE" in markdown and " (clean 0." in markdown
    # band gaps: the test MAE of metals and non-metals (the run's monitor class rule) next to the total
    assert float(simplified["test_mae_metal_mean"]) >= 0 and float(simplified["test_mae_non-metal_mean"]) >= 0
    for name in ("comparison_mae.png", "comparison_forest.png", "comparison_robustness.png", "comparison_gates.png"):
        assert (result / name).stat().st_size > 1000
    with open(result / "comparison_robustness.csv", newline="") as handle:
        curves = {(row["label"], float(row["ratio"])): row for row in csv.DictReader(handle)}
    assert set(curves) == {(label, r) for label in ("graph_only", "simplified") for r in (0.0, 1.0)}
    assert all(row["n_seeds"] == "2" and row["mode"] == "delete" for row in curves.values())
    assert curves[("graph_only", 1.0)]["mae_mean"] == curves[("graph_only", 0.0)]["mae_mean"]  # no text used
    assert curves[("graph_only", 0.0)]["gate_gate"] == ""  # graph_only reports no gate
    assert 0 <= float(curves[("simplified", 1.0)]["gate_gate"]) <= 1
    assert float(curves[("simplified", 0.0)]["mae_mean"]) == pytest.approx(
        float(rows["simplified"]["test_mae_mean"]), rel=1e-4)
    ranks = sorted(rows.values(), key=lambda r: int(r["rank"]))
    assert float(ranks[0]["val_mae_mean"]) <= float(ranks[1]["val_mae_mean"])


def test_matrix_resumes_without_redoing_finished_cells(matrix_out, capsys):
    result = matrix_out / "result"
    summaries = sorted((result / "runs").glob("*/seed*/summary.json"))
    assert len(summaries) == 4
    stamps = [p.stat().st_mtime_ns for p in summaries]
    assert main(["compare", "--matrix", str(matrix_out / "matrix.yaml"), "--out", str(result)]) == 0
    assert "4 already finished, 0 run" in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in summaries] == stamps


def test_a_partial_matrix_call_still_compares_every_finished_cell(matrix_out, tmp_path):
    result = matrix_out / "result"
    out = tmp_path / "partial"
    shutil.copytree(result, out, ignore=shutil.ignore_patterns("comparison*"))
    assert main(["compare", "--matrix", str(matrix_out / "matrix.yaml"), "--out", str(out),
                 "--only", "simplified", "--seeds", "0"]) == 0
    with open(out / "comparison.csv", newline="") as handle:
        rows = {row["label"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"graph_only", "simplified"} and rows["simplified"]["seeds"] == "0 1"


def test_summarise_existing_runs_escapes_labels(matrix_out, tmp_path):
    runs = sorted(p for p in (matrix_out / "result" / "runs").glob("*/seed*") if p.is_dir())
    hostile_run = tmp_path / "hostile"
    shutil.copytree(runs[-1], hostile_run)
    config = json.loads((hostile_run / "config.json").read_text())
    config["experiment"]["name"] = HOSTILE
    (hostile_run / "config.json").write_text(json.dumps(config))
    out = tmp_path / "summary"
    assert main(["compare", *map(str, runs[:2]), str(hostile_run), "--out", str(out)]) == 0
    markdown = (out / "comparison.md").read_text()
    assert "<script>" not in markdown and "<img" not in markdown and "&lt;script&gt;" in markdown
    assert main(["report", str(out), "--out", str(tmp_path / "hostile.html")]) == 0
    page = (tmp_path / "hostile.html").read_text()
    assert "<script" not in page and "<img src=x" not in page


VIEWPORT = {"width": 1300, "height": 900}
LAYOUT_JS = """() => {
    const width = window.innerWidth, wide = [];
    for (const el of document.body.querySelectorAll('*')) {
        if (el.parentElement.closest('.table-wrap')) continue;  // tables scroll inside their own box
        const box = el.getBoundingClientRect();
        if (box.width > width || box.right > width + 1) wide.push(el.tagName + ' ' + Math.round(box.width));
    }
    return {scroll_width: document.documentElement.scrollWidth, width: width, wide: wide.slice(0, 10)};
}"""


def _screenshot_path(tmp_path: Path, name: str) -> Path:
    """Where a test's screenshot goes: ``$CRYSFUSE_SCREENSHOTS`` (``docs/img`` to refresh the docs' pictures)
    or the test's temporary folder."""
    folder = Path(os.environ.get("CRYSFUSE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def _assert_fits_the_window(info: dict, screenshot: Path) -> None:
    """What a person sees in a 1,300-px-wide window: no horizontal page scroll, no element wider than the
    window, every figure loaded; the first screen's screenshot is small enough for the docs."""
    layout = info["layout"]
    assert layout["width"] == VIEWPORT["width"]
    assert layout["scroll_width"] <= layout["width"] and layout["wide"] == [], layout
    assert info["images"] and all(ok for _, ok in info["images"]), info["images"]
    assert 10_000 < screenshot.stat().st_size < 300_000


def _open_in_chromium(path: Path, screenshot: Path | None = None) -> dict:
    playwright, chromium = chromium_or_skip()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport=VIEWPORT)
        messages, dialogs = [], []
        page.on("console", lambda m: messages.append((m.type, m.text)))
        page.on("pageerror", lambda e: messages.append(("pageerror", str(e))))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        info = page.evaluate("""() => ({
            tables: document.querySelectorAll('table').length,
            rows: document.querySelectorAll('tbody tr').length,
            images: Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth > 0]),
            title: document.title,
        })""")
        info["layout"] = page.evaluate(LAYOUT_JS)
        if screenshot is not None:
            page.screenshot(path=str(screenshot))
        browser.close()
    info["errors"] = [m for m in messages if m[0] in ("error", "pageerror")]
    info["dialogs"] = dialogs
    return info


def test_report_of_a_comparison_renders_in_chromium(matrix_out, tmp_path):
    out = tmp_path / "comparison.html"
    assert main(["report", str(matrix_out / "result"), "--out", str(out)]) == 0
    screenshot = _screenshot_path(tmp_path, "report_comparison.png")
    info = _open_in_chromium(out, screenshot)
    assert info["errors"] == [] and info["dialogs"] == []
    assert info["tables"] >= 1 and info["rows"] >= 2
    assert len(info["images"]) >= 2
    _assert_fits_the_window(info, screenshot)


def test_report_of_a_run_with_diagnosis_and_robustness(matrix_out, tmp_path):
    run_dir = min((matrix_out / "result" / "runs").glob("simplified/seed0"))
    assert main(["diagnose", "--checkpoint", str(run_dir), "--n-samples", "4", "--out", str(run_dir / "diagnosis")]) == 0
    out = tmp_path / "run.html"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    page = out.read_text()
    for heading in ("Summary", "Learning curves", "Test set predictions", "Gates during training", "Diagnosis",
                    "Robustness", "Config"):
        assert f">{heading}" in page, heading
    for alt in ("parity plot", "error histogram", "MAE per target range", "gate vs error"):
        assert f'alt="{alt}"' in page, alt
    screenshot = _screenshot_path(tmp_path, "report_run.png")
    info = _open_in_chromium(out, screenshot)
    assert info["errors"] == [] and info["tables"] >= 5
    assert len(info["images"]) >= 8
    _assert_fits_the_window(info, screenshot)


def test_report_refuses_a_directory_without_results(tmp_path):
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "x.html")]) != 0


def test_matrix_robustness_limit_reaches_the_command(tmp_path):
    from crysfuse.analysis.matrix import _cell_commands, load_matrix

    path = tmp_path / "m.yaml"
    path.write_text(json.dumps({"variants": ["simplified"], "seeds": [0],
                                "robustness": {"modes": ["mask"], "ratios": [0, 1.0], "limit": 25}}))
    matrix = load_matrix(path, tmp_path / "out")
    train, robustness = _cell_commands(matrix.cells[0], matrix.robustness)
    assert train[-2:] == ["--config", str(tmp_path / "out" / "runs" / "simplified" / "seed0.config.json")]
    assert robustness[robustness.index("--limit") + 1] == "25"
    assert robustness[robustness.index("--ratios") + 1] == "0,1.0"
    path.write_text(json.dumps({"variants": ["simplified"], "robustness": {"modes": ["mask"]}}))
    matrix = load_matrix(path, tmp_path / "out2")
    assert "--limit" not in _cell_commands(matrix.cells[0], matrix.robustness)[1]


def test_results_tables_script_reads_a_study(matrix_out, tmp_path, capsys):
    """scripts/results_tables.py (docs/results.md's tables) on a real matrix, with a real diagnosis."""
    import importlib.util

    study = tmp_path / "study"
    (study / "all").mkdir(parents=True)
    (study / "runs").symlink_to(matrix_out / "result" / "runs")
    shutil.copy(matrix_out / "result" / "comparison_robustness.csv", study / "all")
    run = matrix_out / "result" / "runs" / "simplified" / "seed0"
    diagnosis_dir = study / "diagnosis" / "simplified" / "seed0"
    assert main(["diagnose", "--checkpoint", str(run), "--out", str(diagnosis_dir)]) == 0
    spec = importlib.util.spec_from_file_location("results_tables", Path(__file__).parents[2] / "scripts" /
                                                  "results_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    capsys.readouterr()
    module.main(study)
    printed = capsys.readouterr().out
    assert "| simplified | `gate` |" in printed and "| graph_only |" in printed
    assert "| simplified | 0 |" in printed  # the diagnosis row
    with open(study / "all" / "runs.csv", newline="") as handle:
        runs = list(csv.DictReader(handle))
    assert sorted((r["label"], r["seed"]) for r in runs) == [
        ("graph_only", "0"), ("graph_only", "1"), ("simplified", "0"), ("simplified", "1")]
    with open(study / "all" / "gated_diagnosis.csv", newline="") as handle:
        (diagnosis,) = list(csv.DictReader(handle))
    assert diagnosis["label"] == "simplified" and float(diagnosis["mae_clean"]) > 0


def test_summary_skips_unfinished_run_directories(matrix_out, tmp_path, caplog):
    runs = sorted(p for p in (matrix_out / "result" / "runs").glob("*/seed*") if p.is_dir())
    unfinished = tmp_path / "running"
    unfinished.mkdir()
    assert main(["compare", *map(str, runs), str(unfinished), "--out", str(tmp_path / "out")]) == 0
    assert "skipping 1 run directories without summary.json" in caplog.text and str(unfinished) in caplog.text
    with pytest.raises(SystemExit, match="none of the given directories"):
        main(["compare", str(unfinished), "--out", str(tmp_path / "out2")])


def _one_seed_run(label: str, val: float, test: float, errors: dict[str, float]):
    from crysfuse.analysis.comparison import RunInfo

    summary = {"val_mae": val, "test_mae": test, "fusion": label, "seed": 0, "n_params_fusion": 0,
               "train_seconds": 1.0, "best_epoch": 1}
    return RunInfo(run_dir=Path(label), label=label, seed=0, summary=summary, test_errors=errors)


def test_a_comparison_with_one_seed_shows_n_1_and_no_spread(tmp_path):
    from crysfuse.analysis.comparison import write_comparison
    from crysfuse.analysis.report import write_report

    runs = [_one_seed_run("graph_only", 0.30, 0.31, {"a": 0.2, "b": 0.4}),
            _one_seed_run("simplified", 0.25, 0.27, {"a": 0.1, "b": 0.44})]
    rows = write_comparison(tmp_path, runs, "graph_only")
    assert [(r["n"], r["val_mae_std"], r["test_mae_std"]) for r in rows] == [(1, None, None)] * 2
    markdown = (tmp_path / "comparison.md").read_text()
    assert "| rank | variant | n |" in markdown and "| 1 | simplified | 1 | 0.2500 | 0.2700 |" in markdown
    assert " ± " not in markdown.split("\n\n")[0].split("|---|")[-1]  # no spread in the table body
    with open(tmp_path / "comparison.csv", newline="") as handle:
        assert [row["test_mae_std"] for row in csv.DictReader(handle)] == ["", ""]
    page = write_report(tmp_path, tmp_path / "report.html").read_text()
    head = page[page.index("<thead>"): page.index("</thead>")]
    assert "<th>n</th>" in head and "<th>seeds</th>" not in head
    first_row = page[page.index("<tbody><tr>"): page.index("</tr>", page.index("<tbody>"))]
    assert first_row.startswith("<tbody><tr><td>1</td><td>simplified</td><td>1</td><td>0.25</td><td>–</td>")
    assert "nan" not in first_row


def test_holm_adjustment_is_step_down_and_monotone():
    from crysfuse.analysis.comparison import holm_adjust

    # ascending: 0.005 × 4, 0.01 × 3, 0.03 × 2, then 0.04 × 1 = 0.04 raised to the 0.06 before it
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([0.021, 0.089, 0.3, 0.5, 0.6, 0.62, 0.79, 0.08])[0] == pytest.approx(8 * 0.021)
    assert holm_adjust([0.4, 0.9]) == pytest.approx([0.8, 0.9]) and holm_adjust([0.7, 0.9]) == [1.0, 1.0]
    assert holm_adjust([]) == []


def test_the_bootstrap_resamples_seeds_as_well_as_records():
    import numpy as np

    from crysfuse.analysis.comparison import bootstrap_seeds_and_records

    # One seed pair 1 eV worse everywhere, the other 1 eV better: averaged first, the spread would vanish; the
    # two-way bootstrap keeps it (means of -1, 0, +1 with probabilities 1/4, 1/2, 1/4).
    draws = bootstrap_seeds_and_records(np.array([[1.0] * 50, [-1.0] * 50]), samples=4000, seed=1)
    assert set(np.round(draws, 9)) == {-1.0, 0.0, 1.0}
    assert np.percentile(draws, [2.5, 97.5]) == pytest.approx([-1.0, 1.0])
    assert (np.abs(draws) < 1e-9).mean() == pytest.approx(0.5, abs=0.04)
    # One seed pair: the bootstrap over records alone, centred on the mean difference.
    single = bootstrap_seeds_and_records(np.linspace(-1, 3, 200)[None, :], samples=2000, seed=0)
    assert single.mean() == pytest.approx(1.0, abs=0.02) and 0 < single.std() < 0.2


def test_the_two_way_bootstrap_has_the_variance_of_both_sources():
    """For differences a[seed] + b[record], resampling both gives var(a)/S + var(b)/N (population variances)."""
    import numpy as np

    from crysfuse.analysis.comparison import bootstrap_seeds_and_records

    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 0.02, 5), rng.normal(0, 0.3, 400)
    draws = bootstrap_seeds_and_records(a[:, None] + b[None, :], samples=6000, seed=2)
    expected = a.var() / a.size + b.var() / b.size
    assert draws.var() == pytest.approx(expected, rel=0.12)
    assert draws.mean() == pytest.approx(a.mean() + b.mean(), abs=3 * expected ** 0.5 / 6000 ** 0.5 + 1e-4)


def test_a_diverged_runs_nan_errors_do_not_make_the_bootstrap_significant(tmp_path):
    import numpy as np

    from crysfuse.analysis.comparison import RunInfo, paired_test

    def run(seed, errors):
        return RunInfo(run_dir=tmp_path, label="x", seed=seed, summary={"test_mae": float(np.nanmean(errors))},
                       test_errors={f"c{i}": e for i, e in enumerate(errors)})

    rng = np.random.default_rng(1)
    base = [run(s, list(rng.uniform(0, 1, 50))) for s in (0, 1)]
    other = [run(s, list(rng.uniform(0, 1, 50))) for s in (0, 1)]
    other[1].test_errors["c7"] = float("nan")
    result = paired_test(other, base)
    assert result["n_test_records"] == 49 and all(np.isfinite(result["bootstrap_ci"]))
    assert 2 / 2001 <= result["p_bootstrap"] <= 1


def test_report_numbers_are_rounded_to_what_they_mean():
    from crysfuse.analysis.report import rounded, table

    assert [rounded(v) for v in (0.123456, 12.3456, 1234.567, float("nan"))] == ["0.123", "12.3", "1,235", "–"]
    html = table([{"n_params": 1234567, "mae": 0.0123456, "ok": True}])
    assert "<td>1,234,567</td>" in html and "<td>0.0123</td>" in html and "<td>True</td>" in html


def test_mae_by_target_range_splits_at_quantiles():
    import numpy as np

    from crysfuse.analysis.report import mae_by_target_range
    from crysfuse.predict import Predictions

    target = np.arange(10, dtype=float)
    predictions = Predictions(ids=[str(i) for i in range(10)], target=target, prediction=target + (target >= 5))
    rows = mae_by_target_range(predictions, bins=2)
    assert [(r["n"], r["mae"]) for r in rows] == [(5, 0.0), (5, 1.0)]
