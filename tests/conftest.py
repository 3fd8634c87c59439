"""Shared fixtures: tiny hand-built crystals, a small real data slice, and a tiny model config.

The real-data tests read ``../shared/data`` (next to the repository). Without it they are skipped on a
developer's machine, but under CI (``CI=true``) they fail: a CI run must never pass by skipping them
(:func:`require_shared`).
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MP36K = SHARED_DATA / "mp36k.json.gz"

TINY_MODEL = [
    "model.dim_hidden=32",
    "model.dim_embedding=16",
    "model.num_alignn_layers=1",
    "model.num_gcn_layers=1",
    "model.dim_projection=16",
    "model.dim_head=16",
    "fusion.dim_hidden=32",
    "fusion.num_heads=2",
    "train.progress_bar=false",
    "train.batch_size=8",
    "train.patience=null",
]


def in_ci() -> bool:
    """``CI`` is set to true (as CI services and ``.ci/run`` do)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


BROWSER_SKIP = "browser test skipped:"
"""Prefix of the skip reason of every test that needs Chromium; the end of the run counts them."""


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Say at the end of the run that browser tests were skipped (a quiet skip in the middle is missed)."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if BROWSER_SKIP in str(r.longrepr)]
    if skipped:
        terminalreporter.write_line(
            f"NOTE: {len(skipped)} browser test(s) were skipped because Chromium or playwright is missing; "
            "install Debian's chromium (apt-get install chromium, as .ci/run does) to run them.", yellow=True)


def chromium_or_skip():
    """playwright's sync API and the path of Debian's chromium (``$CRYSFUSE_TEST_CHROMIUM`` names another
    executable), or skip the test with a reason that :func:`pytest_terminal_summary` counts."""
    import shutil

    playwright = pytest.importorskip("playwright.sync_api", reason=f"{BROWSER_SKIP} playwright is not installed")
    chromium = shutil.which(os.environ.get("CRYSFUSE_TEST_CHROMIUM", "chromium"))
    if chromium is None:
        pytest.skip(f"{BROWSER_SKIP} Debian's chromium is not installed (.ci/run installs it)")
    return playwright, chromium


def require_shared(path: Path) -> Path:
    """``path`` (shared data) if it exists; otherwise skip the test, or fail it under CI."""
    if not path.exists():
        message = f"{path} is not available (the shared data set lives next to the repository)"
        if in_ci():
            pytest.fail(f"{message}; CI=true, so the real-data tests must run, not be skipped", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def mp36k_path() -> Path:
    return require_shared(MP36K)


@pytest.fixture(scope="session")
def mp36k_slice(tmp_path_factory: pytest.TempPathFactory, mp36k_path: Path) -> Path:
    """The first 40 records of mp36k as a small JSON file (fast to load)."""
    with gzip.open(mp36k_path, "rt", encoding="utf-8") as handle:
        records = json.load(handle)[:40]
    path = tmp_path_factory.mktemp("data") / "mp36k_40.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the whole session, so graphs/texts are built once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def nacl() -> Structure:
    return Structure(Lattice.cubic(5.64), ["Na", "Cl"] * 1, [[0, 0, 0], [0.5, 0.5, 0.5]]).get_primitive_structure()


@pytest.fixture
def silicon() -> Structure:
    return Structure(Lattice.cubic(5.43), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])


def jarvis_record(record_id: str, structure: Structure, **fields) -> dict:
    """A JARVIS-style JSON record for ``structure``."""
    from crysfuse.data.structures import jarvis_atoms_dict

    atoms = jarvis_atoms_dict(structure)
    return {"id": record_id, "atoms": atoms, **fields}


@pytest.fixture(scope="session")
def train_tiny(tmp_path_factory, mp36k_slice, cache_dir):
    """Train (once per session and setting) a tiny model on the 40-record mp36k slice; returns its run dir."""
    from crysfuse.cli import main

    runs: dict[tuple, Path] = {}

    def train(fusion: str, *extra: str, epochs: int = 2) -> Path:
        key = (fusion, extra, epochs)
        if key not in runs:
            run_dir = tmp_path_factory.mktemp("runs") / fusion
            args = ["train", "--data", str(mp36k_slice), "--target", "gap pbe", "--fusion", fusion,
                    "--epochs", str(epochs), "--run-dir", str(run_dir), "--cache-dir", str(cache_dir),
                    "--text-file", str(SHARED_DATA / "mp36k.desc_jarvis.jsonl.gz")]
            for setting in TINY_MODEL + list(extra):
                args += ["--set", setting]
            assert main(args) == 0
            runs[key] = run_dir
        return runs[key]

    return train
