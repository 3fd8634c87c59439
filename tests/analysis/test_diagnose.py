"""`crysfuse diagnose`: decision flow on constructed reports, stability, escaping, and real runs per family."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from crysfuse.analysis.diagnose import (
    md,
    recommend,
    render_markdown,
    spearman,
    text_effect,
    training_stability,
)
from crysfuse.cli import main
from crysfuse.config import MonitorConfig
from crysfuse.data.corruption import Corruption
from crysfuse.predict import Predictions

OUTPUTS = ["diagnosis.json", "diagnosis.md", "gate_histogram.png", "gate_vs_error.png", "parity.png"]


def _report(gates: dict[str, float], *, unstable: bool = False, measurable: bool = True) -> dict:
    effect = {"mae_clean": 0.30, "mae_text_deleted": 0.36 if measurable else 0.301,
              "delta_mae": 0.06 if measurable else 0.001, "relative": 0.2 if measurable else 0.003,
              "ci95": [0.04, 0.08] if measurable else [-0.01, 0.012], "measurable": measurable}
    return {"n_samples": 50, "uses_text": True, "text_effect": effect,
            "gates": {key: {"clean": {"mean": mean}} for key, mean in gates.items()},
            "stability": {"unstable": unstable, "reasons": ["train loss rose > 1.5x epoch over epoch"] if unstable
                          else []}}


@pytest.mark.parametrize("gates, unstable, measurable, expected", [
    ({"quality": 0.7, "fusion": 0.6, "effective": 0.42}, False, True, ["keep the current model"]),
    ({"quality": 0.7, "fusion": 0.4, "effective": 0.28}, False, True, ["use `simplified`"]),
    ({"quality": 0.45, "fusion": 0.9, "effective": 0.4}, False, True, ["use `quality`"]),
    ({"gate": 0.5}, True, True, ["use `warmup`"]),
    ({"gate": 0.5}, False, False, ["graph-only is as good"]),
    ({"quality": 0.4, "fusion": 0.5, "effective": 0.2}, True, False,
     ["use `simplified`", "use `quality`", "use `warmup`", "graph-only is as good"]),
])
def test_decision_flow(gates, unstable, measurable, expected):
    recs = recommend(_report(gates, unstable=unstable, measurable=measurable), MonitorConfig())
    assert [r["action"] for r in recs] == expected
    for rec in recs:
        assert rec["reason"] and rec["numbers"]  # every recommendation carries its numbers
    if "use `simplified`" in expected:
        assert recs[0]["numbers"] == {"gate": "effective", "mean": gates["effective"], "threshold": 0.3, "n": 50}
        assert f"{gates['effective']:.3f} < 0.3" in recs[0]["reason"]


def test_decision_flow_follows_configured_thresholds():
    report = _report({"quality": 0.7, "fusion": 0.6, "effective": 0.42})
    assert recommend(report, MonitorConfig(effective_low=0.5))[0]["action"] == "use `simplified`"


def _predictions(target, prediction) -> Predictions:
    return Predictions(ids=[str(i) for i in range(len(target))], target=np.asarray(target, float),
                       prediction=np.asarray(prediction, float))


def test_text_effect_measurable_only_when_deleting_text_hurts():
    rng = np.random.default_rng(0)
    target = rng.normal(size=200)
    clean = _predictions(target, target + rng.normal(scale=0.1, size=200))
    worse = _predictions(target, target + rng.normal(scale=0.5, size=200))
    same = _predictions(target, clean.prediction + rng.normal(scale=1e-4, size=200))
    hurt = text_effect(clean, worse)
    assert hurt["measurable"] and hurt["delta_mae"] > 0.2 and hurt["ci95"][0] > 0
    assert hurt["mae_text_deleted"] == pytest.approx(np.mean(np.abs(worse.prediction - target)))
    assert not text_effect(clean, same)["measurable"]
    assert not text_effect(worse, clean)["measurable"]  # deleting the text helps: the text adds nothing


def test_spearman():
    x = np.arange(10.0)
    assert spearman(x, x**3)["rho"] == pytest.approx(1.0)
    assert spearman(x, -x)["rho"] == pytest.approx(-1.0)
    assert np.isnan(spearman(np.ones(10), x)["rho"]) and np.isnan(spearman(x[:2], x[:2])["rho"])


def test_training_stability_reads_metrics_and_monitor_warnings(tmp_path):
    rows = [{"epoch": 0, "train_loss": 1.0, "val_mae": 0.5}, {"epoch": 1, "train_loss": 0.6, "val_mae": 0.4},
            {"epoch": 2, "train_loss": 1.2, "val_mae": 0.7}, {"epoch": 3, "train_loss": 0.5, "val_mae": 0.35}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    stable = training_stability(tmp_path)
    assert stable["unstable"] and stable["epochs"] == 4
    assert stable["loss_spikes"] == [{"epoch": 2, "ratio": pytest.approx(2.0)}]
    assert stable["val_spikes"] == [{"epoch": 2, "ratio": pytest.approx(1.75)}]
    assert stable["monitor_warnings_by_rule"] is None
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    (tmp_path / "gate_statistics.json").write_text(json.dumps({"warnings_by_rule": {"jump": 3, "suppression": 9}}))
    jumpy = training_stability(tmp_path)
    assert jumpy["unstable"] and jumpy["reasons"] == ["gate monitor: 3 'jump' warning(s)"]
    (tmp_path / "gate_statistics.json").write_text(json.dumps({"warnings_by_rule": {"suppression": 9}}))
    assert not training_stability(tmp_path)["unstable"]


def test_markdown_escapes_untrusted_strings():
    assert md("<img src=x onerror=alert(1)>") == "&lt;img src=x onerror=alert(1)&gt;"
    assert md("a|b*c*_d_[l](u)`x`") == r"a\|b\*c\*\_d\_\[l\](u)\`x\`"


@pytest.fixture(scope="module")
def gated_diagnosis(train_tiny, tmp_path_factory):
    run_dir = train_tiny("gated")
    out = tmp_path_factory.mktemp("diag") / "gated"
    assert main(["diagnose", "--checkpoint", str(run_dir), "--out", str(out)]) == 0
    return run_dir, out


def test_diagnose_writes_report_markdown_and_plots(gated_diagnosis):
    run_dir, out = gated_diagnosis
    for name in OUTPUTS:
        assert (out / name).stat().st_size > (1000 if name.endswith(".png") else 100), name
    report = json.loads((out / "diagnosis.json").read_text())
    splits = json.loads((run_dir / "splits.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert report["n_samples"] == len(splits["test"]) and report["split"] == "test"
    assert report["metrics"]["clean"]["mae"] == pytest.approx(summary["test_mae"], rel=1e-5)
    assert {"mae", "rmse", "r2", "max_error"} <= set(report["metrics"]["text_deleted"])
    assert set(report["gates"]) == {"quality", "fusion", "effective"}
    for gate in report["gates"].values():
        assert {"mean", "std", "min", "max"} <= set(gate["clean"]) and gate["text_deleted"]["count"] == 4
        assert -1 <= gate["spearman_abs_error"]["rho"] <= 1
    assert sum(g["n"] for g in report["by_crystal_system"].values()) == report["n_samples"]
    assert report["by_element"] and all(set(report["gates"]) <= set(v) for v in report["by_element"].values())
    assert report["stability"]["epochs"] == 2
    assert report["stability"]["monitor_warnings_by_rule"] is not None  # read from gate_statistics.json
    assert report["recommendations"] and all(r["numbers"] for r in report["recommendations"])
    text = (out / "diagnosis.md").read_text()
    for rec in report["recommendations"]:
        assert rec["action"] in text
    assert "## Metrics" in text and "## Gates" in text and "Spearman" in text


def test_diagnose_text_deleted_matches_the_robustness_evaluation(gated_diagnosis):
    from crysfuse.analysis.robustness import evaluate, load_evaluation_set

    run_dir, out = gated_diagnosis
    report = json.loads((out / "diagnosis.json").read_text())
    deleted = evaluate(load_evaluation_set(run_dir), Corruption("random_word", "delete", 1.0))
    assert report["metrics"]["text_deleted"]["mae"] == pytest.approx(deleted["mae"], rel=1e-9)
    assert report["gates"]["effective"]["text_deleted"]["mean"] == pytest.approx(deleted["effective_mean"])


def test_markdown_of_a_real_report_escapes_hostile_ids(gated_diagnosis):
    _, out = gated_diagnosis
    report = json.loads((out / "diagnosis.json").read_text())
    hostile = "<script>alert(1)</script>|x"
    report["largest_errors"][0]["id"] = hostile
    report["by_element"] = {hostile: next(iter(report["by_element"].values()))}
    text = render_markdown(report)
    assert "<script>" not in text and "&lt;script&gt;" in text
    row = next(line for line in text.splitlines() if "alert" in line and "script" in line)
    assert len(re.findall(r"(?<!\\)\|", row)) == row.count(" | ") + 2  # the id's pipe cannot split the row


@pytest.mark.parametrize("fusion, extra", [("simplified", ()), ("warmup", ("fusion.warmup_steps=4",)),
                                           ("graph_only", ())])
def test_diagnose_on_other_families(train_tiny, tmp_path, fusion, extra):
    run_dir = train_tiny(fusion, *extra)
    out = tmp_path / "diag"
    assert main(["diagnose", "--checkpoint", str(run_dir), "--split", "val", "--n-samples", "3",
                 "--out", str(out)]) == 0
    report = json.loads((out / "diagnosis.json").read_text())
    assert report["n_samples"] == 3 and report["split"] == "val"
    assert set(report["gates"]) == (set() if fusion == "graph_only" else {"gate"})
    assert report["uses_text"] == (fusion != "graph_only")
    if fusion == "graph_only":
        assert report["text_effect"] is None
        assert report["metrics"]["clean"] == report["metrics"]["text_deleted"]
    assert report["recommendations"]
    for name in OUTPUTS:
        assert (out / name).is_file()


def test_mae_by_class_on_a_hand_made_example():
    from crysfuse.analysis.diagnose import mae_by_class
    from crysfuse.training.gate_distribution import target_classes

    target = np.array([0.0, 0.0, 0.0, 1.0, 2.0, 3.0])
    clean = _predictions(target, [0.1, 0.2, 0.0, 1.5, 2.0, 2.0])   # |err|: .1 .2 0 | .5 0 1
    deleted = _predictions(target, [0.4, 0.0, 0.2, 1.0, 3.0, 3.0])  # |err|: .4 0 .2 | 0 1 0
    classes = target_classes(target, "gap pbe", MonitorConfig())
    gate = np.array([0.1, 0.1, 0.1, 0.5, 0.5, 0.6])
    by_class = mae_by_class(clean, deleted, classes, {"effective": gate})
    assert list(by_class) == ["metal", "non-metal"]
    assert by_class["metal"]["n"] == 3 and by_class["non-metal"]["n"] == 3
    assert by_class["metal"]["mae_clean"] == pytest.approx(0.1)
    assert by_class["metal"]["mae_text_deleted"] == pytest.approx(0.2)
    assert by_class["non-metal"]["mae_clean"] == pytest.approx(0.5)
    assert by_class["non-metal"]["mae_text_deleted"] == pytest.approx(1 / 3)
    assert by_class["non-metal"]["delta_mae"] == pytest.approx(1 / 3 - 0.5)
    assert by_class["non-metal"]["effective"] == pytest.approx(1.6 / 3)
    assert mae_by_class(clean, deleted, None, {}) is None


def test_a_switching_effective_gate_does_not_recommend_simplified():
    from crysfuse.training.gate_distribution import describe

    rng = np.random.default_rng(0)
    bimodal = np.r_[rng.normal(0.09, 0.03, 43), rng.normal(0.44, 0.05, 57)].clip(0, 1)
    report = _report({"quality": 0.7, "fusion": 0.4, "effective": float(bimodal.mean())})
    assert report["gates"]["effective"]["clean"]["mean"] < 0.3
    assert recommend(report, MonitorConfig())[0]["action"] == "use `simplified`"  # the mean alone
    report["gates"]["effective"]["distribution"] = describe(bimodal)
    report["notes"] = ["effective has two modes: ..."]
    recs = recommend(report, MonitorConfig())
    assert [r["action"] for r in recs] == ["keep the current model"]
    assert "switch, not suppression" in recs[0]["reason"]
    unimodal = rng.beta(2, 12, 100)
    report["gates"]["effective"] = {"clean": {"mean": float(unimodal.mean())}, "distribution": describe(unimodal)}
    assert recommend(report, MonitorConfig())[0]["action"] == "use `simplified`"


def test_jump_warnings_of_an_augmentation_unaware_monitor_are_not_instability(tmp_path):
    rows = [{"epoch": 0, "train_loss": 1.0, "val_mae": 0.5}, {"epoch": 1, "train_loss": 0.6, "val_mae": 0.4}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "gate_statistics.json").write_text(json.dumps({"warnings_by_rule": {"jump": 2}}))
    assert training_stability(tmp_path)["unstable"]
    old = training_stability(tmp_path, augmented=True)
    assert not old["unstable"] and "not counted" in old["notes"][0]
    (tmp_path / "gate_statistics.json").write_text(json.dumps({"warnings_by_rule": {"jump": 2}, "augmented": True}))
    assert training_stability(tmp_path, augmented=True)["unstable"]  # the new monitor compared clean samples


def test_diagnose_reports_distributions_and_classes_on_a_band_gap_run(gated_diagnosis):
    _, out = gated_diagnosis
    report = json.loads((out / "diagnosis.json").read_text())
    assert report["class_rule"].startswith("metal: gap pbe ≤ 0.01")
    assert sum(c["n"] for c in report["by_class"].values()) == report["n_samples"]
    for c in report["by_class"].values():
        assert {"mae_clean", "mae_text_deleted", "delta_mae", "effective"} <= set(c)
    distribution = report["gates"]["effective"]["distribution"]
    assert set(distribution["quantiles"]) == {"q05", "q25", "q50", "q75", "q95"}
    assert "by_class" in distribution and "switch" in distribution
    text = (out / "diagnosis.md").read_text()
    assert "## Gate distributions (clean text)" in text and "## By class" in text
