"""Shared helpers of the benchmark scripts (not a test module; each script prints one JSON object).

Everything that must be identical on both sides of a comparison (threads, allocator, structures, graphs)
is set up here once per process, so crysfuse and the reference always run in the same process with the
same settings, and their repeats are interleaved.
"""

from __future__ import annotations

import gzip
import json
import os
import platform
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
MP36K = DATA / "mp36k.json.gz"
MP36K_TEXT = DATA / "mp36k.desc_jarvis.jsonl.gz"

MALLOC_ENV_KEYS = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                   "LD_PRELOAD")
"""Allocator knobs. They are read by glibc (or the preloaded allocator) at process start, so they are the
same for both sides of every comparison by construction (one process)."""


def setup_allocator(mode: str) -> dict[str, int]:
    """``tuned``: apply crysfuse's opt-in malloc settings (what ``CRYSFUSE_MALLOC=tuned crysfuse ...`` does) to
    the whole process, i.e. to every side of the comparison; ``system``: leave glibc's defaults."""
    if mode != "tuned":
        return {}
    from crysfuse.allocator import tune_allocator

    return tune_allocator()


def setup_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set
        pass


def environment(threads: int) -> dict[str, Any]:
    """What the numbers depend on: threads, allocator settings, versions, CPU."""
    import torch

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    try:
        from importlib.metadata import version

        versions["alignn"] = version("alignn")
    except Exception:  # noqa: BLE001 - reference not installed
        versions["alignn"] = None
    return {
        "threads": threads,
        "torch_threads": torch.get_num_threads(),
        "cpu": cpu,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_native_bf16": _native_bf16(),
        "cpu_count": os.cpu_count(),
        "allocator_env": {k: os.environ[k] for k in MALLOC_ENV_KEYS if k in os.environ},
        "allocator_mallopt": _mallopt_settings(),
        "versions": versions,
    }


def _native_bf16() -> bool | None:
    """Whether oneDNN computes bfloat16 in hardware here (``None`` where torch cannot tell): without it every
    bf16 number in a benchmark is emulated and slower than float32."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return None


def _mallopt_settings() -> dict[str, int]:
    from crysfuse.allocator import allocator_settings

    return allocator_settings()


def load_mp36k(n: int, *, seed: int = 0, max_atoms: int | None = None, pool: int = 4000) -> list[dict]:
    """``n`` records of mp36k, a seeded random sample of the first ``pool`` (optionally ≤ ``max_atoms``)."""
    with gzip.open(MP36K, "rt", encoding="utf-8") as handle:
        rows = json.load(handle)
    rows = rows[:pool]
    if max_atoms is not None:
        rows = [r for r in rows if len(r["atoms"]["elements"]) <= max_atoms]
    rng = random.Random(seed)
    rng.shuffle(rows)
    return rows[:n]


def load_texts(ids: list[str]) -> dict[str, str]:
    """Precomputed jarvis descriptions of these ids (``mp36k.desc_jarvis.jsonl.gz``)."""
    wanted, out = set(ids), {}
    with gzip.open(MP36K_TEXT, "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["id"] in wanted:
                out[row["id"]] = row["text"]
                if len(out) == len(wanted):
                    break
    return out


def now() -> float:
    return time.perf_counter()


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def interleaved(sides: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Run each side once per round, alternating the order every round; seconds per call."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = now()
            sides[name]()
            times[name].append(now() - t0)
    return times


def paired_ratio(slow: list[float], fast: list[float]) -> float:
    """Median over rounds of ``slow[r] / fast[r]`` (rounds are interleaved, so noise mostly cancels)."""
    return median([s / f for s, f in zip(slow, fast)])


def best_ratio(slow: list[float], fast: list[float]) -> float:
    """``min(slow) / min(fast)``: the ratio of the least-disturbed rounds (noise only ever adds time)."""
    return min(slow) / min(fast) if slow and fast else float("nan")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux ``clear_refs`` 5); False when unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak RSS since the last :func:`reset_peak_rss` (VmHWM), else since start (ru_maxrss)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def emit(result: dict[str, Any]) -> None:
    """Print the one JSON object of a benchmark (rounded floats) to stdout."""

    def clean(value: Any) -> Any:
        if isinstance(value, float):
            return round(value, 4) if abs(value) < 1e6 else value
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    json.dump(clean(result), sys.stdout, indent=1)
    sys.stdout.write("\n")
    sys.stdout.flush()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
