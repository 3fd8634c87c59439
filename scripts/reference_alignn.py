"""Train the reference ALIGNN (``alignn.train_alignn``) on exactly the crysfuse parity split and summarise it.

Three steps (docs/parity.md)::

    python scripts/reference_alignn.py prepare --target "gap pbe" --root /tmp/ref_gap
    python scripts/reference_alignn.py run --root /tmp/ref_gap --out-dir /tmp/ref_gap_runs --seeds 0 1 2
    python scripts/reference_alignn.py collect --out-dir /tmp/ref_gap_runs --out docs/parity/reference_gap_pbe.json

``prepare`` writes ``id_prop.csv`` (``<mp id>,<target>``, no header, rows ordered train, val, test) and one
POSCAR per crystal, named by its id. With ``keep_data_order`` alignn takes train = rows[:n_train],
val = rows[-(n_val + n_test):-n_test], test = rows[-n_test:] (``alignn.data.get_id_train_val_test``), which is
our split exactly; ``collect`` checks that against the ``ids_train_val_test.json`` alignn writes. alignn
drops rows whose target is NaN before splitting, so ``prepare`` refuses them.

``run`` writes one config per seed (the shared reference config with ``random_seed``, split sizes, epochs, and
the LMDB cache inside the seed's folder) and runs ``python -m alignn.train_alignn`` with ``OMP_NUM_THREADS``;
a seed with a ``run_info.json`` (written after alignn succeeds) is skipped. ``collect`` recomputes the test MAE from those
predictions (alignn makes them with the *last-epoch* weights, not ``best_model.pt``; the reference config's
``gradwise_weight`` 1.0 stops alignn writing ``prediction_results_test_set.csv``), reads epoch times,
validation losses, the baseline MAE and the parameter count from alignn's log, and writes a JSON summary plus
a CSV beside it. Logging goes to stderr; the last stdout line is a JSON result.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import logging
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DEFAULT_DATA = SHARED / "data" / "mp36k.json.gz"
DEFAULT_SPLIT = REPO / "configs" / "parity" / "mp36k_3000.split.json"
DEFAULT_CONFIG = SHARED / "reference" / "alignn_reference_config.json"
PARTS = ("train", "val", "test")
PREDICTIONS = "Test_results.json"  # [{"id", "target_out": [y], "pred_out": [y_hat]}], last-epoch weights
LOG = "train.log"
RUN_INFO = "run_info.json"  # written by run after alignn succeeds: marks a finished seed
logger = logging.getLogger("reference_alignn")


def read_json(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def load_split(path: Path) -> dict[str, list[str]]:
    split = read_json(path)
    ids = [i for part in PARTS for i in split[part]]
    if len(set(ids)) != len(ids):
        raise SystemExit(f"{path}: ids repeat across or within train/val/test")
    return {part: list(split[part]) for part in PARTS}


def prepare(args: argparse.Namespace) -> dict:
    """Write ROOT/id_prop.csv (train, val, test order) and ROOT/<id> POSCAR files; ROOT/split.json records the split."""
    from jarvis.core.atoms import Atoms

    split = load_split(args.split)
    wanted = {i for part in PARTS for i in split[part]}
    logger.info("reading %s", args.data)
    records = {r["id"]: r for r in read_json(args.data) if r["id"] in wanted}
    missing = wanted - records.keys()
    if missing:
        raise SystemExit(f"{len(missing)} split ids are not in {args.data}, e.g. {sorted(missing)[:3]}")
    args.root.mkdir(parents=True, exist_ok=True)
    rows = []
    for part in PARTS:
        for mp_id in split[part]:
            value = records[mp_id][args.target]
            if value is None or not math.isfinite(float(value)):
                raise SystemExit(f"{mp_id}: {args.target!r} is {value!r}; alignn would drop it and shift the split")
            if "/" in mp_id or "," in mp_id:
                raise SystemExit(f"{mp_id!r} cannot be used as a file name in id_prop.csv")
            Atoms.from_dict(records[mp_id]["atoms"]).write_poscar(str(args.root / mp_id))
            rows.append((mp_id, repr(float(value))))
    with open(args.root / "id_prop.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    sizes = {part: len(split[part]) for part in PARTS}
    (args.root / "split.json").write_text(json.dumps({"target": args.target, **split}) + "\n", encoding="utf-8")
    logger.info("wrote %d structures and id_prop.csv to %s (%s)", len(rows), args.root, sizes)
    return {"root": str(args.root), "target": args.target, **sizes}


def seed_config(base: dict, sizes: dict[str, int], seed: int, epochs: int, seed_dir: Path) -> dict:
    config = json.loads(json.dumps(base))
    config.update(random_seed=seed, epochs=epochs, keep_data_order=True, output_dir=str(seed_dir),
                  filename=str(seed_dir / "lmdb_"),  # LMDB caches: <filename>{train,val,test}_data, per seed
                  n_train=sizes["train"], n_val=sizes["val"], n_test=sizes["test"])
    return config


def run(args: argparse.Namespace) -> dict:
    """Train one alignn run per seed; skip seeds that already finished."""
    split_file = args.root / "split.json"
    split = read_json(split_file)
    sizes = {part: len(split[part]) for part in PARTS}
    base = read_json(args.config)
    done, trained = [], []
    for seed in args.seeds:
        seed_dir = (args.out_dir / f"seed{seed}").resolve()
        if (seed_dir / RUN_INFO).exists():
            logger.info("seed %d: %s exists, skipped", seed, seed_dir / RUN_INFO)
            done.append(seed)
            continue
        seed_dir.mkdir(parents=True, exist_ok=True)
        config_path = seed_dir / "reference_config.json"  # alignn itself writes config.json (the resolved one)
        config_path.write_text(json.dumps(seed_config(base, sizes, seed, args.epochs, seed_dir), indent=1),
                               encoding="utf-8")
        command = [sys.executable, "-m", "alignn.train_alignn", "--root_dir", str(args.root.resolve()),
                   "--config_name", str(config_path), "--file_format", "poscar", "--output_dir", str(seed_dir)]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
                   PYTHONUNBUFFERED="1")
        logger.info("seed %d: training (%d threads), log %s", seed, args.threads, seed_dir / LOG)
        start = time.time()
        with open(seed_dir / LOG, "w", encoding="utf-8") as log:
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=seed_dir,
                                  check=False).returncode
        wall = time.time() - start
        if code != 0 or not (seed_dir / PREDICTIONS).exists():
            raise SystemExit(f"seed {seed}: alignn exited with {code}; see {seed_dir / LOG}")
        for cache in seed_dir.glob("lmdb_*_data"):
            shutil.rmtree(cache, ignore_errors=True)
        info = {"seed": seed, "wall_seconds": wall, "threads": args.threads, "epochs": args.epochs,
                "root": str(args.root.resolve()), "target": split.get("target"), "command": command}
        (seed_dir / RUN_INFO).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        logger.info("seed %d: done in %.0f s", seed, wall)
        trained.append(seed)
    return {"out_dir": str(args.out_dir), "trained": trained, "skipped": done}


def parse_log(path: Path) -> dict:
    """Per-epoch train/val times and losses, parameter count and training time from alignn's stdout."""
    train, val, out, section = [], [], {}, None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(("Train Loss:", "Val Loss:")):
            section = train if line.startswith("Train") else val
            continue
        fields = line.split()
        if section is not None and fields and fields[0].isdigit() and len(fields) >= 8:
            section.append({"epoch": int(fields[0]), "loss": float(fields[1]), "seconds": float(fields[7])})
        section = None
        if match := re.match(r"Model parameters (\d+)", line):
            out["n_params"] = int(match.group(1))
        elif match := re.match(r"Time taken \(s\) ([\d.eE+-]+)", line):
            out["train_seconds"] = float(match.group(1))
        elif match := re.match(r"Baseline MAE: ([\d.eE+-]+)", line):
            out["baseline_mae"] = float(match.group(1))  # predicting the train mean on the test set
    out.update(train=train, val=val)
    return out


def collect_seed(seed_dir: Path, split: dict[str, list[str]]) -> dict:
    rows = read_json(seed_dir / PREDICTIONS)
    ids = [row["id"] for row in rows]
    errors = [abs(row["target_out"][0] - row["pred_out"][0]) for row in rows]
    written = read_json(seed_dir / "ids_train_val_test.json")
    split_matches = all(written[f"id_{part}"] == split[part] for part in PARTS) and ids == split["test"]
    if not split_matches:
        logger.error("%s: alignn's train/val/test ids differ from the split", seed_dir)
    log = parse_log(seed_dir / LOG)
    info = read_json(seed_dir / RUN_INFO)
    epochs = len(log["val"]) or info["epochs"]
    epoch_times = [t["seconds"] + v["seconds"] for t, v in zip(log["train"], log["val"])]
    val_losses = [v["loss"] for v in log["val"]]
    best = min(range(len(val_losses)), key=val_losses.__getitem__) if val_losses else None
    return {
        "seed": int(seed_dir.name.removeprefix("seed")),
        "test_mae": statistics.fmean(errors), "baseline_mae": log.get("baseline_mae"), "n_test": len(rows),
        "split_matches": split_matches,
        "epochs": epochs, "n_params": log.get("n_params"),
        "epoch_seconds": statistics.fmean(epoch_times) if epoch_times
        else info["wall_seconds"] / epochs,
        "train_seconds": log.get("train_seconds"), "wall_seconds": info["wall_seconds"],
        # mean training L1 over the last epoch's batches (training mode, raw units)
        "final_train_l1": log["train"][-1]["loss"] if log["train"] else None,
        "final_val_l1": val_losses[-1] if val_losses else None,
        "best_val_l1": val_losses[best] if val_losses else None,
        "best_val_epoch": best,  # 0-based; the test predictions are still from the final epoch
    }


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def collect(args: argparse.Namespace) -> dict:
    """Summarise every finished seed under --out-dir into --out (JSON) and the CSV beside it."""
    seed_dirs = sorted((d for d in args.out_dir.glob("seed*") if (d / RUN_INFO).exists()),
                       key=lambda d: int(d.name.removeprefix("seed")))
    if not seed_dirs:
        raise SystemExit(f"no finished seeds under {args.out_dir}")
    info = read_json(seed_dirs[0] / RUN_INFO)
    split_file = args.split or Path(info["root"]) / "split.json"
    split = load_split(split_file)
    rows = [collect_seed(d, split) for d in seed_dirs]
    summary = {"model": "alignn (reference, alignn.train_alignn)", "target": info["target"],
               "split": str(split_file), "sizes": {part: len(split[part]) for part in PARTS},
               "test_model": "last epoch", "seeds": rows}
    for key in ("test_mae", "epoch_seconds", "wall_seconds"):
        summary[f"{key}_mean"], summary[f"{key}_std"] = mean_std([r[key] for r in rows])
    summary["split_matches"] = all(r["split_matches"] for r in rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    with open(args.out.with_suffix(".csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    logger.info("test MAE %.4f ± %.4f over %d seeds -> %s", summary["test_mae_mean"], summary["test_mae_std"],
                len(rows), args.out)
    return {key: summary[key] for key in ("target", "test_mae_mean", "test_mae_std", "split_matches")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("prepare", help=prepare.__doc__)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--split", type=Path, default=DEFAULT_SPLIT)
    p.add_argument("--target", required=True, help='record key, e.g. "gap pbe" or "e_form"')
    p.add_argument("--root", type=Path, required=True)
    p = commands.add_parser("run", help=run.__doc__)
    p.add_argument("--root", type=Path, required=True, help="a folder written by prepare")
    p.add_argument("--out-dir", type=Path, required=True, help="one seed<N> folder per seed")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="the reference train_alignn config")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for alignn")
    p = commands.add_parser("collect", help=collect.__doc__)
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--split", type=Path, help="default: <root>/split.json of the runs")
    p.add_argument("--out", type=Path, required=True, help="summary JSON; the CSV goes beside it")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = {"prepare": prepare, "run": run, "collect": collect}[args.command](args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
