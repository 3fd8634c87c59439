"""Comparison matrices: a base config × fusion variants × seeds (× named extra settings), each cell a normal
run directory trained (and evaluated for robustness) by ``crysfuse`` child processes; the finished cells are then
compared with :mod:`crysfuse.analysis.comparison`. Finished cells are skipped, so an interrupted matrix resumes; cells can run in parallel
processes.

Matrix file (YAML)::

    base: cpu_small.yaml            # a config file (relative to the matrix file), or a mapping
    set: ["data.limit=400"]         # overrides applied to the base (optional)
    variants: [graph_only, simplified]
    seeds: [0, 1, 2]
    extra:                          # optional: name -> overrides; every variant runs with each
      nomiddle: []
      middle: ["fusion.middle_layers=[2]"]
      two_stage: ["train.init_from={out}/runs/graph_only/seed{seed}"]  # the matrix's --out, the cell's seed
    only: [graph_only, simplified+middle]   # optional: keep only these variant+extra labels
    robustness:                     # optional: evaluated after each cell is trained
      strategies: [random_word]
      modes: [delete, mask]
      ratios: [0, 0.5, 1.0]
      split: test
      limit: 1000                   # optional: only the first N records of the split
    baseline: graph_only            # the label paired tests compare against (default graph_only)
"""

from __future__ import annotations

import logging
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from crysfuse.config import Config, ConfigError
from crysfuse.io import write_json_atomic
from crysfuse.rundir import has_robustness, has_summary, is_finished, robustness_results_dir

logger = logging.getLogger(__name__)

MATRIX_KEYS = {"base", "set", "variants", "seeds", "extra", "only", "robustness", "baseline"}
MATRIX_JSON = "matrix.json"


@dataclass
class RobustnessPlan:
    """Corruptions evaluated after training each cell."""

    strategies: list[str] = field(default_factory=lambda: ["random_word"])
    modes: list[str] = field(default_factory=lambda: ["delete", "mask"])
    ratios: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0])
    split: str = "test"
    limit: int | None = None
    """Evaluate only the first ``limit`` records of the split (all when ``None``)."""


@dataclass
class Cell:
    """One run of the matrix."""

    label: str
    seed: int
    config: Config

    @property
    def run_dir(self) -> Path:
        return Path(self.config.experiment.run_dir)


@dataclass
class Matrix:
    cells: list[Cell]
    robustness: RobustnessPlan | None
    baseline: str


def load_matrix(path: str | Path, out: str | Path, *, overrides: list[str] | None = None,
                only: list[str] | None = None, seeds: list[int] | None = None) -> Matrix:
    """Read a matrix file and expand it into cells whose run directories live under ``out/runs``.

    ``overrides`` (``section.key=value``) apply to every cell after the matrix's own settings (e.g. a short
    smoke run of a big matrix); ``only`` keeps the rows with these labels (within the file's own ``only``);
    ``seeds`` replaces the matrix's.
    """
    path = Path(path)
    spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: a matrix is a mapping with keys {sorted(MATRIX_KEYS)}")
    unknown = set(spec) - MATRIX_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown matrix key(s) {sorted(unknown)}; known: {sorted(MATRIX_KEYS)}")
    base = spec.get("base", {})
    if isinstance(base, str):
        base_config = Config.load((path.parent / base) if not Path(base).is_absolute() else Path(base))
    else:
        base_config = Config.from_dict(base)
    base_config = base_config.with_overrides([str(s) for s in spec.get("set", [])])
    variants = [str(v) for v in spec.get("variants") or [base_config.fusion.name]]
    seeds = [int(s) for s in seeds or spec.get("seeds") or [base_config.train.seed]]
    extra = spec.get("extra") or {"": []}
    labels = [f"{v}+{e}" if e else v for v in variants for e in extra]
    if spec.get("only") is not None:  # the file's own row selection, narrowed further by the caller's
        if not isinstance(spec["only"], list):
            raise ConfigError(f"{path}: 'only' is a list of labels, got {spec['only']!r}")
        listed = [str(label) for label in spec["only"]]
        unknown = [label for label in listed if label not in labels]
        if unknown:
            raise ConfigError(f"{path}: 'only' names rows that no variant × extra makes: {unknown}; rows: {labels}")
        asked = only
        only = listed if asked is None else [label for label in asked if label in listed]
        if not only:
            raise ConfigError(f"{path}: none of {asked} is among the file's rows {listed}")
    cells = []
    for variant in variants:
        for extra_name, extra_overrides in extra.items():
            label = f"{variant}+{extra_name}" if extra_name else variant
            if only is not None and label not in only:
                continue
            for seed in seeds:
                run_dir = Path(out) / "runs" / label / f"seed{seed}"
                config = base_config.replace({
                    "fusion.name": variant, "train.seed": seed, "experiment.run_dir": str(run_dir),
                    "experiment.name": label,
                }).with_overrides([_fill_placeholders(str(o), out=out, seed=seed)
                                   for o in [*extra_overrides, *(overrides or [])]])
                cells.append(Cell(label=label, seed=seed, config=config))
    if only is not None and not cells:
        raise ConfigError(f"{path}: no row is labelled {only}")
    plan = RobustnessPlan(**spec["robustness"]) if spec.get("robustness") else None
    baseline = str(spec.get("baseline", "graph_only"))
    return Matrix(cells=cells, robustness=plan, baseline=baseline)


def _fill_placeholders(override: str, *, out: str | Path, seed: int) -> str:
    """``{out}`` → the matrix's output folder, ``{seed}`` → the cell's seed (e.g. in ``train.init_from``)."""
    return override.replace("{out}", str(out)).replace("{seed}", str(seed))


def _waves(todo: list[Cell], cells: list[Cell]) -> list[list[Cell]]:
    """``todo`` in two waves: first the cells that start from scratch, then those whose ``train.init_from`` is
    another cell of the matrix (two-stage training waits for the run it starts from; a two-stage cell that
    starts from another two-stage cell is not supported)."""
    run_dirs = {c.run_dir.resolve() for c in cells}
    later = [c for c in todo if c.config.train.init_from and Path(c.config.train.init_from).resolve() in run_dirs]
    first = [c for c in todo if c not in later]
    return [wave for wave in (first, later) if wave]


def cell_finished(cell: Cell, plan: RobustnessPlan | None) -> bool:
    """Trained (status ``finished``) and, when a robustness plan is given, evaluated."""
    return is_finished(cell.run_dir) and (plan is None or has_robustness(cell.run_dir))


def _cell_commands(cell: Cell, plan: RobustnessPlan | None) -> list[list[str]]:
    config_path = cell.run_dir.parent / f"{cell.run_dir.name}.config.json"
    cell.run_dir.parent.mkdir(parents=True, exist_ok=True)
    cell.config.save(config_path)
    commands = [[sys.executable, "-m", "crysfuse", "train", "--config", str(config_path)]]
    if plan is not None:
        commands.append([
            sys.executable, "-m", "crysfuse", "robustness", "--checkpoint", str(cell.run_dir),
            "--strategies", ",".join(plan.strategies), "--modes", ",".join(plan.modes),
            "--ratios", ",".join(str(r) for r in plan.ratios), "--split", plan.split,
            "--out", str(robustness_results_dir(cell.run_dir)),
            *(["--limit", str(plan.limit)] if plan.limit else []),
        ])
    return commands


def _run_cell(cell: Cell, plan: RobustnessPlan | None) -> tuple[Cell, int]:
    """Train (and evaluate) one cell in child processes; output goes to ``<run_dir>.log``."""
    log_path = cell.run_dir.parent / f"{cell.run_dir.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log:
        for command in _cell_commands(cell, plan):
            code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
            if code != 0:
                return cell, code
    return cell, 0


def run_matrix(matrix: Matrix, *, jobs: int = 1) -> dict[str, Any]:
    """Run every unfinished cell (``jobs`` at a time); returns counts of skipped, done and failed cells."""
    todo = [c for c in matrix.cells if not cell_finished(c, matrix.robustness)]
    skipped = len(matrix.cells) - len(todo)
    logger.info("matrix: %d cells, %d already finished, %d to run (%d at a time)",
                len(matrix.cells), skipped, len(todo), jobs)
    failed: list[str] = []
    with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
        for wave in _waves(todo, matrix.cells):
            runnable = [c for c in wave if not _source_failed(c, failed)]
            for cell in wave:
                if cell not in runnable:
                    logger.error("cell %s seed %d skipped: the run it starts from (%s) failed", cell.label,
                                 cell.seed, cell.config.train.init_from)
                    failed.append(str(cell.run_dir))
            for cell, code in pool.map(lambda c: _run_cell(c, matrix.robustness), runnable):
                _log_cell_outcome(cell, code, failed)
    return {"cells": len(matrix.cells), "skipped": skipped, "ran": len(todo) - len(failed), "failed": failed}


def _source_failed(cell: Cell, failed: list[str]) -> bool:
    """Whether ``cell`` starts from (``train.init_from``) a run directory that failed in this matrix run."""
    source = cell.config.train.init_from
    return bool(source) and Path(source).resolve() in {Path(f).resolve() for f in failed}


def _log_cell_outcome(cell: Cell, code: int, failed: list[str]) -> None:
    """Log a finished cell; a failed one (exit ``code`` ≠ 0) is appended to ``failed`` with its log's tail."""
    if code == 0:
        logger.info("cell %s seed %d finished", cell.label, cell.seed)
        return
    failed.append(str(cell.run_dir))
    log_path = cell.run_dir.parent / f"{cell.run_dir.name}.log"
    tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
    logger.error("cell %s seed %d failed (exit %d); log %s ends with:\n%s", cell.label, cell.seed,
                 code, log_path, "\n".join(tail))


def record_matrix(out: Path, matrix: Matrix, outcome: dict[str, Any]) -> None:
    """``matrix.json``: the expanded cells and what happened to them."""
    write_json_atomic(out / MATRIX_JSON, {
        "baseline": matrix.baseline,
        "cells": [{"label": c.label, "seed": c.seed, "run_dir": str(c.run_dir)} for c in matrix.cells],
        "outcome": outcome,
    })


def run_matrix_file(path: str | Path, out: str | Path, *, jobs: int = 1,
                    **selection: Any) -> tuple[Matrix, dict[str, Any]]:
    """Load the matrix file (``selection``: the keyword arguments of :func:`load_matrix`), run its unfinished
    cells and record ``matrix.json`` in ``out``."""
    matrix = load_matrix(path, out, **selection)
    outcome = run_matrix(matrix, jobs=jobs)
    record_matrix(Path(out), matrix, outcome)
    return matrix, outcome


def finished_cells(matrix: Matrix) -> list[Path]:
    """The run directories of the cells that finished training."""
    return [c.run_dir for c in matrix.cells if has_summary(c.run_dir)]
