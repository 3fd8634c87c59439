"""Start-up of a run (issue 14): seconds from a fresh process to "items ready" (records read, every graph
found in the cache: ``load_config_records`` + ``prepare(..., lazy=True)``, what ``crysfuse train`` does before
its first step), graph-only, for mp36k.

Each side runs in its own process (nothing warmed up in memory):

* ``cold``: empty cache: every structure parsed and checked, every graph built (only with ``--cold``; full
  mp36k takes ~10 min on one core — use ``crysfuse preprocess`` to fill a cache instead);
* ``before``: graphs cached, warm start off (``CRYSFUSE_WARM_START=0``: the code before issue 14);
* ``first_after``: graphs cached, warm start on, no checks remembered yet (parses, checks and remembers);
* ``warm``: graphs cached and checks remembered: no structure is parsed.

Prints one JSON object. Usage::

    python benchmarks/startup.py --cache mp36k_cache     # full mp36k, a cache filled by `crysfuse preprocess`
    python benchmarks/startup.py --quick                 # first 30 records, temporary cache (cold side too)
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--limit", type=int, default=None, help="first N records (default: all)")
    p.add_argument("--cache", help="cache folder whose graphs/ are used (read only; default: a temporary one)")
    p.add_argument("--cold", action="store_true", help="also time an empty cache (builds every graph)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: time one start in this process
    args = p.parse_args(argv)
    if args.quick:
        args.limit, args.cold = args.limit or 30, True
    return args


def child(args: argparse.Namespace) -> None:
    """One start: import, read the records, prepare the lazy items; print the seconds as JSON."""
    C.setup_threads(args.threads)
    from crysfuse.config import Config
    from crysfuse.data import jarvis_json
    from crysfuse.data.pipeline import prepare
    from crysfuse.data.sources import load_config_records

    parsed = [0]
    real = jarvis_json.structure_from_jarvis_dict

    def counting(atoms):
        parsed[0] += 1
        return real(atoms)

    jarvis_json.structure_from_jarvis_dict = counting
    overrides = [f"data.cache_dir='{args.child}'", f"data.path='{C.MP36K}'", "data.target='gap pbe'"]
    if args.limit:
        overrides.append(f"data.limit={args.limit}")
    config = Config().with_overrides(overrides)
    t_imports = C.now()
    loaded = load_config_records(config)
    t_loaded = C.now()
    prepared = prepare(loaded.records, config, uses_text=False, lazy=True)
    t_ready = C.now()
    print(json.dumps({
        "seconds": t_ready - T_START, "imports_s": t_imports - T_START, "load_records_s": t_loaded - t_imports,
        "prepare_s": t_ready - t_loaded, "items": len(prepared.items), "structures_parsed": parsed[0],
        "rejections": sorted((r.id, r.stage, r.reason) for r in loaded.rejections + prepared.rejections),
        "peak_rss_mb": C.peak_rss_mb(),
    }))


def start(args: argparse.Namespace, cache: Path, *, warm_start: bool) -> dict:
    command = [sys.executable, __file__, "--child", str(cache), "--threads", str(args.threads)]
    if args.limit:
        command += ["--limit", str(args.limit)]
    env = {**os.environ, "CRYSFUSE_WARM_START": "1" if warm_start else "0", "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(command, check=False, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fresh_cache(tmp: Path, name: str, graphs: Path | None) -> Path:
    """A cache folder of its own (so the remembered checks start empty) sharing ``graphs``."""
    folder = tmp / name
    folder.mkdir()
    if graphs is not None:
        (folder / "graphs").symlink_to(graphs.resolve(), target_is_directory=True)
    return folder


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.child:
        child(args)
        return {}
    sides: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="crysfuse-startup-") as tmp_name:
        tmp = Path(tmp_name)
        graphs = Path(args.cache) / "graphs" if args.cache else None
        if args.cold or graphs is None:
            cold = fresh_cache(tmp, "cold", None)
            C.log("cold start (empty cache: building the graphs)")
            sides["cold"] = start(args, cold, warm_start=True)
            graphs = graphs or cold / "graphs"
        C.log("before: graphs cached, warm start off")
        sides["before"] = start(args, fresh_cache(tmp, "before", graphs), warm_start=False)
        after = fresh_cache(tmp, "after", graphs)
        C.log("first start after the change: graphs cached, checks not remembered yet")
        sides["first_after"] = start(args, after, warm_start=True)
        C.log("warm: graphs cached, checks remembered")
        sides["warm"] = start(args, after, warm_start=True)
    rejections = {name: side.pop("rejections") for name, side in sides.items()}
    result = {
        "benchmark": "startup",
        "quick": args.quick,
        "environment": C.environment(args.threads),
        "setup": {"source": "mp36k.json.gz", "limit": args.limit, "target": "gap pbe", "text": False,
                  "what": "fresh process → records read and lazy items ready (graphs from the cache)"},
        "sides": sides,
        "rejections_identical": all(r == rejections["before"] for r in rejections.values()),
        "speedup_warm_vs_before": sides["before"]["seconds"] / sides["warm"]["seconds"],
    }
    C.emit(result)
    return result


if __name__ == "__main__":
    main()
