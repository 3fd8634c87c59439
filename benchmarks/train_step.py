"""Training and inference throughput: crysfuse (``graph_only``, ``simplified`` with cached text) against the
reference ``alignn.models.alignn_atomwise_pure.ALIGNNAtomWisePure`` at the same architecture, on the same
structures and the SAME edge sets (crysfuse graphs converted to the reference's ``TorchGraph`` input).

Prints one JSON object. Usage::

    python benchmarks/train_step.py                 # full: 64 mp36k structures, batch 32, 4+4 layers, hidden 256
    python benchmarks/train_step.py --quick         # CI smoke run (tiny model, seconds)

Allocator settings (``MALLOC_*``, ``LD_PRELOAD``) are read at process start and are therefore identical
for all sides; they are reported under ``environment.allocator_env``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny CI run")
    p.add_argument("--structures", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-atoms", type=int, default=40, help="skip larger mp36k cells")
    p.add_argument("--alignn-layers", type=int, default=4)
    p.add_argument("--gcn-layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (each: every batch once per side)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda (the GPU section of docs/benchmarks.md)")
    p.add_argument("--allocator", choices=["system", "tuned"], default="system",
                   help="malloc settings for the whole process, i.e. for every side: glibc's defaults (as "
                        "crysfuse runs by default) or crysfuse's opt-in CRYSFUSE_MALLOC=tuned settings")
    p.add_argument("--no-text", action="store_true", help="skip the simplified (text) side")
    p.add_argument("--no-reference", action="store_true", help="skip ALIGNNAtomWisePure")
    p.add_argument("--no-bf16", action="store_true", help="skip the graph_only side under bfloat16 autocast")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", help="run this one side (graph_only, graph_only_bf16, simplified, reference) "
                                  "in this process: how the peak RSS of each side is measured")
    p.add_argument("--no-rss-processes", action="store_true",
                   help="skip measuring each side's peak RSS in a process of its own")
    args = p.parse_args(argv)
    if args.only:
        args.no_text = args.only != "simplified"
        args.no_bf16 = args.only != "graph_only_bf16"
        args.no_reference = args.only != "reference"
        args.no_rss_processes = True
    if args.quick:
        args.structures, args.batch_size, args.hidden = 8, 4, 32
        args.alignn_layers, args.gcn_layers, args.repeats, args.max_atoms = 1, 1, 1, 12
        args.no_rss_processes = True
    return args


# ----------------------------------------------------------------------------------------------- models
def make_crysfuse(fusion: str, args: argparse.Namespace, dim_text: int):
    from crysfuse.config import Config
    from crysfuse.models.crysfuse import CrysFuseModel

    config = Config().with_overrides([
        f"fusion.name={fusion}",
        f"model.num_alignn_layers={args.alignn_layers}",
        f"model.num_gcn_layers={args.gcn_layers}",
        f"model.dim_hidden={args.hidden}",
    ])
    return CrysFuseModel(config, dim_text=dim_text if fusion != "graph_only" else 0)


def make_reference(args: argparse.Namespace):
    from alignn.models.alignn_atomwise_pure import ALIGNNAtomWisePure, ALIGNNAtomWisePureConfig

    config = ALIGNNAtomWisePureConfig(
        name="alignn_atomwise_pure",
        alignn_layers=args.alignn_layers,
        gcn_layers=args.gcn_layers,
        atom_input_features=92,
        edge_input_features=80,
        triplet_input_features=40,
        embedding_features=64,
        hidden_features=args.hidden,
        output_features=1,
        # property model: no forces/stress/penalty/ZBL/extra heads, angle features given (not recomputed)
        calculate_gradient=False,
        gradwise_weight=0.0,
        stresswise_weight=0.0,
        atomwise_output_features=0,
        additional_output_features=0,
        use_penalty=False,
        energy_mult_natoms=False,
        use_zbl=False,
        use_cutoff_function=False,
        lg_on_fly=False,
    )
    return ALIGNNAtomWisePure(config)


def reference_pair(graph, table):
    """crysfuse CrystalGraph → the reference's (g, lg) TorchGraph pair with the same edges and triplets."""
    from alignn.torch_graph_builder import TorchGraph

    ei, lei = graph.edge_index, graph.line_edge_index
    g = TorchGraph(num_nodes=graph.num_nodes, src=ei[0].contiguous(), dst=ei[1].contiguous(),
                   ndata={"atom_features": table.index_select(0, graph.atomic_numbers)},
                   edata={"r": graph.edge_vectors})
    lg = TorchGraph(num_nodes=graph.num_edges, src=lei[0].contiguous(), dst=lei[1].contiguous(),
                    edata={"h": graph.bond_cosines})
    return g, lg


# ------------------------------------------------------------------------------------------------- FLOPs
def count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def matmul_peak(hidden: int, rows: int, quick: bool, device: str = "cpu") -> dict[str, float]:
    """GFLOP/s of matmuls in float32 and bfloat16: the model's typical shape ``[rows, D] @ [D, D]`` and a
    large square one (the ceilings the model's achieved throughput is compared with)."""
    import torch

    out = {}
    for dtype_name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        for name, (m, k, n) in {"model_shape": (rows, hidden, hidden),
                                "square_2048": (512, 512, 512) if quick else (2048, 2048, 2048)}.items():
            a = torch.randn(m, k, device=device).to(dtype)
            b = torch.randn(k, n, device=device).to(dtype)
            seconds = best_of(lambda: a @ b, device, 3 if quick else 7)  # noqa: B023
            key = name if dtype_name == "fp32" else f"{name}_bf16"
            out[key] = 2.0 * m * k * n / seconds / 1e9
    return out


def memory_bandwidth(quick: bool, device: str = "cpu") -> float:
    """GB/s of a large tensor copy (bytes read + written): the ceiling of the memory-bound passes."""
    import torch

    src = torch.randn((8 if quick else 64) << 20, device=device)  # 32 MB / 256 MB of float32
    dst = torch.empty_like(src)
    seconds = best_of(lambda: dst.copy_(src), device, 3 if quick else 7)
    return 2.0 * src.numel() * src.element_size() / seconds / 1e9


def best_of(fn, device: str, rounds: int) -> float:
    """Seconds of the fastest of ``rounds`` rounds of three calls (after two warm-up calls)."""
    for _ in range(2):
        fn()
    best = float("inf")
    for _ in range(rounds):
        synchronize(device)
        t0 = C.now()
        for _ in range(3):
            fn()
        synchronize(device)
        best = min(best, (C.now() - t0) / 3)
    return best


def synchronize(device: str) -> None:
    """Wait for queued GPU work (a no-op on the CPU), so that wall-clock rounds measure the work."""
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def own_process_peak_rss(name: str, args: argparse.Namespace) -> float:
    """Peak RSS (MB) of training one side alone in a child process with the same settings. With crysfuse's
    allocator settings freed memory stays mapped, so one process's peak is the largest side's; a process
    per side measures each one."""
    import json
    import subprocess

    command = [sys.executable, __file__, "--only", name, "--repeats", "1", "--threads", str(args.threads),
               "--allocator", args.allocator, "--structures", str(args.structures),
               "--batch-size", str(args.batch_size), "--max-atoms", str(args.max_atoms),
               "--alignn-layers", str(args.alignn_layers), "--gcn-layers", str(args.gcn_layers),
               "--hidden", str(args.hidden), "--seed", str(args.seed), "--device", args.device]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:  # the timings of this process stay valid: report the failure, keep going
        C.log(f"peak RSS of {name} in its own process failed: {proc.stderr[-500:]}")
        return float("nan")
    return float(json.loads(proc.stdout)["sides"][name]["peak_rss_mb"])


# -------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    C.setup_allocator(args.allocator)
    C.setup_threads(args.threads)
    import torch
    from torch_geometric.data import Batch

    from crysfuse.chemistry import cgcnn_feature_table
    from crysfuse.data.dataset import FOLLOW_BATCH, make_crystal_data
    from crysfuse.data.graphs import build_crystal_graph
    from crysfuse.data.sources import structure_from_jarvis_dict

    torch.manual_seed(args.seed)
    rows = C.load_mp36k(args.structures, seed=args.seed, max_atoms=args.max_atoms)
    graphs = [build_crystal_graph(structure_from_jarvis_dict(r["atoms"])) for r in rows]
    targets = [float(r["e_form"]) for r in rows]
    B = args.batch_size
    chunks = [list(range(s, min(s + B, len(graphs)))) for s in range(0, len(graphs), B)]
    chunks = [c for c in chunks if len(c) == B] or chunks[:1]
    used = [i for c in chunks for i in c]

    # text (simplified side): MiniLM embeddings computed once, then cached in the items
    sides_text = not args.no_text
    dim_text, encoded = 0, None
    if sides_text:
        from crysfuse.text.encoder import EncoderSettings, TextEncoder

        texts = C.load_texts([rows[i]["id"] for i in used])
        encoder = TextEncoder(EncoderSettings("minilm", max_length=512, batch_size=32))
        encoded = dict(zip(used, encoder.encode([texts.get(rows[i]["id"]) for i in used])))
        dim_text = encoder.dim
    empty_tokens, empty_pooled = torch.zeros(0, 1, dtype=torch.float16), torch.zeros(1, dtype=torch.float16)

    def items(with_text: bool) -> list:
        out = []
        for i in used:
            tok, pooled = (encoded[i].tokens, encoded[i].pooled) if with_text else (empty_tokens, empty_pooled)
            out.append(make_crystal_data(graphs[i], tokens=tok, pooled=pooled, target=targets[i], index=i))
        return out

    def collate(items_, chunk_positions):
        return Batch.from_data_list([items_[p] for p in chunk_positions], follow_batch=FOLLOW_BATCH)

    positions = [[used.index(i) for i in c] for c in chunks]
    plain_items = items(False)
    batches = {"graph_only": [collate(plain_items, p) for p in positions]}
    if sides_text:
        text_items = items(True)
        batches["simplified"] = [collate(text_items, p) for p in positions]

    models: dict[str, torch.nn.Module] = {"graph_only": make_crysfuse("graph_only", args, 0)}
    if not args.no_bf16:
        # crysfuse's `train.precision=bf16-mixed`: bfloat16 autocast, float32 master weights (same init).
        models["graph_only_bf16"] = make_crysfuse("graph_only", args, 0)
        models["graph_only_bf16"].load_state_dict(models["graph_only"].state_dict())
        batches["graph_only_bf16"] = batches["graph_only"]
    if sides_text:
        models["simplified"] = make_crysfuse("simplified", args, dim_text)
    have_reference = not args.no_reference
    if have_reference:
        from alignn.torch_graph_builder import batch_torch_graph_pairs

        table = cgcnn_feature_table().nan_to_num(0.0)
        models["reference"] = make_reference(args)
        batches["reference"] = []
        for c in chunks:
            g, lg = batch_torch_graph_pairs([reference_pair(graphs[i], table) for i in c])
            batches["reference"].append(((g, lg, None), torch.tensor([targets[i] for i in c])))

    device = torch.device(args.device)
    for name, model in models.items():
        model.to(device)
        batches[name] = [((b[0][0].to(device), b[0][1].to(device), None), b[1].to(device))
                         if name == "reference" else b.to(device) for b in batches[name]]

    def predict(name: str, batch):
        if name == "reference":
            return models[name](batch[0])["out"].reshape(-1)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=name.endswith("_bf16")):
            return models[name].forward_normalized(batch).prediction.float()

    def target_of(name: str, batch):
        return batch[1] if name == "reference" else batch.y

    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, m in models.items()}

    def train_round(name: str):
        model, opt = models[name], optimizers[name]
        model.train()

        def run() -> None:
            for batch in batches[name]:
                opt.zero_grad(set_to_none=True)
                loss = torch.nn.functional.mse_loss(predict(name, batch), target_of(name, batch))
                loss.backward()
                opt.step()
            synchronize(args.device)
        return run

    def infer_round(name: str):
        model = models[name]

        def run() -> None:
            model.eval()
            with torch.inference_mode():
                for batch in batches[name]:
                    predict(name, batch)
            synchronize(args.device)
        return run

    peaks: dict[str, float] = {name: 0.0 for name in models}

    def with_peak(name: str, fn):
        def run() -> None:
            C.reset_peak_rss()
            fn()
            peaks[name] = max(peaks[name], C.peak_rss_mb())
        return run

    if args.only:  # one side in this process: its training peak RSS alone (allocator as for the others)
        models = {args.only: models[args.only]}
    # warm-up (one step per side; not timed), then FLOPs of one training step per side
    for name in models:
        train_round(name)()
        infer_round(name)()
    flops = {}
    for name in models:
        model, batch = models[name], batches[name][0]
        model.train()
        flops[name] = count_flops(lambda: torch.nn.functional.mse_loss(
            predict(name, batch), target_of(name, batch)).backward())  # noqa: B023
        model.zero_grad(set_to_none=True)

    C.log(f"train_step: {len(used)} structures in {len(chunks)} batches of {B}; timing {args.repeats} rounds")
    train = C.interleaved({name: with_peak(name, train_round(name)) for name in models}, args.repeats)
    infer = C.interleaved({name: infer_round(name) for name in models}, args.repeats)

    n_struct = len(used)
    steps = len(chunks)
    peak_mm = matmul_peak(args.hidden, int(sum(b.edge_index.shape[1] for b in batches["graph_only"]) / steps),
                          args.quick, args.device)
    bandwidth = memory_bandwidth(args.quick, args.device)
    sides = {}
    for name in models:
        step_s = C.median(train[name]) / steps
        sides[name] = {
            "train_structures_per_s": n_struct / C.median(train[name]),
            "train_step_s": step_s,
            "infer_structures_per_s": n_struct / C.median(infer[name]),
            "peak_rss_mb": peaks[name],
            "train_gflop_per_step": flops[name] / 1e9,
            "train_gflops_achieved": flops[name] / 1e9 / step_s,
            "train_fraction_of_matmul_peak": flops[name] / 1e9 / step_s / peak_mm["model_shape"],
            "train_fraction_of_bf16_matmul_peak": flops[name] / 1e9 / step_s / peak_mm["model_shape_bf16"],
            "num_parameters": sum(p.numel() for p in models[name].parameters()),
            "train_round_s": train[name],
            "infer_round_s": infer[name],
        }
    if not args.no_rss_processes:
        for name, side in sides.items():
            side["peak_rss_mb_own_process"] = own_process_peak_rss(name, args)
    ratios = {}
    if have_reference:
        for name in models:
            if name == "reference":
                continue
            ratios[f"train_speedup_{name}_vs_reference"] = C.paired_ratio(train["reference"], train[name])
            ratios[f"infer_speedup_{name}_vs_reference"] = C.paired_ratio(infer["reference"], infer[name])
            ratios[f"train_speedup_{name}_vs_reference_best_rounds"] = C.best_ratio(train["reference"], train[name])
            ratios[f"infer_speedup_{name}_vs_reference_best_rounds"] = C.best_ratio(infer["reference"], infer[name])
            ratios[f"peak_rss_{name}_over_reference"] = peaks[name] / peaks["reference"]
            if "peak_rss_mb_own_process" in sides[name]:
                ratios[f"peak_rss_{name}_over_reference_own_processes"] = (
                    sides[name]["peak_rss_mb_own_process"] / sides["reference"]["peak_rss_mb_own_process"])
    if sides_text and "graph_only" in train:  # not in a process of its own (--only simplified)
        ratios["train_simplified_over_graph_only"] = C.paired_ratio(train["simplified"], train["graph_only"])
    batch0 = batches["graph_only"][0]
    result = {
        "benchmark": "train_step",
        "quick": args.quick,
        "environment": C.environment(args.threads),
        "setup": {
            "structures": n_struct,
            "source": f"mp36k.json.gz, seeded sample (seed {args.seed}) of the first 4000 records, "
                      f"<= {args.max_atoms} atoms",
            "batch_size": B,
            "steps_per_round": steps,
            "repeats": args.repeats,
            "alignn_layers": args.alignn_layers,
            "gcn_layers": args.gcn_layers,
            "hidden": args.hidden,
            "batch0_nodes_edges_triplets": [int(batch0.num_nodes), int(batch0.edge_index.shape[1]),
                                            int(batch0.line_edge_index.shape[1])],
            "graphs": "crysfuse build_crystal_graph (ALIGNN classic semantics, full line graph); the "
                      "reference gets the same edges/triplets converted to TorchGraph (lg_on_fly=False)",
            "optimizer": "AdamW, MSE loss, batches collated once before timing (collation not timed)",
            "reference_config": "ALIGNNAtomWisePure, no gradients/penalty/ZBL/extra heads"
                                if have_reference else None,
            "norms": f"crysfuse model.norm={models['graph_only'].config.model.norm} (its default), reference LayerNorm",
        },
        "matmul_peak_gflops": peak_mm,
        "memory_bandwidth_gbs": bandwidth,
        "sides": sides,
        "ratios": ratios,
    }
    C.emit(result)
    return result


if __name__ == "__main__":
    main()
