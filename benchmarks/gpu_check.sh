#!/usr/bin/env bash
# The GPU section of docs/benchmarks.md as one command, for a machine with a CUDA GPU (nothing in the test
# suite depends on it). From the repository root, with crysfuse, torch (CUDA build) and the `bench` extra
# installed, and the shared data beside the checkout:
#
#     bash benchmarks/gpu_check.sh [OUT_DIR]
#
# 1. train_step.py --device cuda: training and inference steps of graph_only in float32 and under bf16
#    autocast, against ALIGNNAtomWisePure, same graphs (JSON: OUT_DIR/train_step_cuda.json);
# 2. a 2-epoch `crysfuse train` of the parity configuration on the GPU in bf16-mixed and in float32
#    (run directories OUT_DIR/train_gpu_*; seconds per epoch in their metrics.jsonl).
set -euo pipefail
out="${1:-gpu_results}"
python="${PYTHON:-python}"
mkdir -p "$out"
"$python" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
"$python" benchmarks/train_step.py --device cuda --threads 8 --repeats 5 --no-rss-processes \
  > "$out/train_step_cuda.json"
for precision in bf16-mixed 32-true; do
  "$python" -m crysfuse train --config configs/parity/graph_gap.yaml --epochs 2 \
    --set train.accelerator=gpu --set train.devices=1 --set "train.precision=$precision" \
    --run-dir "$out/train_gpu_$precision" --cache-dir "$out/cache" > "$out/train_gpu_$precision.log" 2>&1
done
"$python" - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
step = json.loads((out / "train_step_cuda.json").read_text())
summary = {"ratios": step["ratios"], "sides": {k: {m: v[m] for m in ("train_step_s", "infer_structures_per_s")}
                                              for k, v in step["sides"].items()}}
for run in sorted(out.glob("train_gpu_*/metrics.jsonl")):
    summary[run.parent.name] = [json.loads(line)["seconds"] for line in run.read_text().splitlines()]
print(json.dumps(summary, indent=1))
PY
