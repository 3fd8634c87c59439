"""Cost of text in a training step, per way of using the text encoder: ``graph_only``; a fused variant
(``simplified``) reading cached frozen MiniLM embeddings (``text.finetune=none``); the same variant re-encoding
the descriptions with the frozen encoder every step (what the prior system did); the same variant training the
encoder (``last_k``, ``all``, ``lora``) on cached token ids; and ``text_only`` with cached embeddings and with
LoRA. Every side collates its batch from items inside the timed step (as a DataLoader would).

Reports seconds per step (interleaved rounds) and, per side, the peak resident memory of one more round
(``peak_rss_mb``) and how far it rose above the memory held before that round (``step_extra_mb``; on CUDA also
``cuda_peak_mb``). Prints one JSON object. Usage::

    python benchmarks/text_overhead.py            # 64 structures, batch 32, 4+4 layers, hidden 256
    python benchmarks/text_overhead.py --quick
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

FINETUNE_SIDES = {"fused_last_k": ("simplified", "last_k"), "fused_all": ("simplified", "all"),
                  "fused_lora": ("simplified", "lora"), "text_only_cached": ("text_only", "none"),
                  "text_only_lora": ("text_only", "lora")}
"""Side → (fusion variant, ``text.finetune``), besides graph_only, fused_cached and fused_reencode."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--structures", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-atoms", type=int, default=40)
    p.add_argument("--alignn-layers", type=int, default=4)
    p.add_argument("--gcn-layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--fusion", default="simplified")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--finetune-layers", type=int, default=2, help="k of the last_k side")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.structures, args.batch_size, args.hidden, args.max_length = 8, 4, 32, 32
        args.alignn_layers, args.gcn_layers, args.repeats, args.max_atoms = 1, 1, 1, 12
    return args


def make_model(fusion: str, finetune: str, args: argparse.Namespace, dim_text: int):
    from crysfuse.config import Config
    from crysfuse.models.crysfuse import CrysFuseModel

    config = Config().replace({
        "fusion.name": fusion, "model.num_alignn_layers": args.alignn_layers, "model.num_gcn_layers": args.gcn_layers,
        "model.dim_hidden": args.hidden, "text.finetune": finetune, "text.max_length": args.max_length,
        "text.finetune_layers": args.finetune_layers,
    })
    return CrysFuseModel(config, dim_text=dim_text if fusion != "graph_only" else 0)


def make_optimizer(model):
    """AdamW with the encoder's trained weights in their own group, as training does."""
    import torch

    text = model.text_encoder_parameters()
    ids = {id(p) for p in text}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    groups = [{"params": rest, "lr": 1e-4}] + ([{"params": text, "lr": 5e-5}] if text else [])
    return torch.optim.AdamW(groups)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    C.setup_threads(args.threads)
    import torch
    from torch_geometric.data import Batch

    from crysfuse.allocator import release_free_memory
    from crysfuse.data.dataset import FOLLOW_BATCH, make_crystal_data, with_text
    from crysfuse.data.graphs import build_crystal_graph
    from crysfuse.data.sources import structure_from_jarvis_dict
    from crysfuse.text.encoder import EncoderSettings, TextEncoder
    from crysfuse.text.tokens import TokenCache

    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    rows = C.load_mp36k(args.structures, seed=args.seed, max_atoms=args.max_atoms)
    n = len(rows) - len(rows) % args.batch_size or len(rows)
    rows = rows[:n]
    texts_by_id = C.load_texts([r["id"] for r in rows])
    texts = [texts_by_id.get(r["id"]) for r in rows]
    empty_tokens, empty_pooled = torch.zeros(0, 1, dtype=torch.float16), torch.zeros(1, dtype=torch.float16)
    plain = [make_crystal_data(build_crystal_graph(structure_from_jarvis_dict(r["atoms"])), tokens=empty_tokens,
                               pooled=empty_pooled, target=float(r["e_form"]), index=i) for i, r in enumerate(rows)]
    encoder = TextEncoder(EncoderSettings("minilm", max_length=args.max_length, batch_size=args.batch_size),
                          device=device)
    t0 = C.now()
    encoded = encoder.encode(texts)
    encode_all_s = C.now() - t0
    t0 = C.now()
    token_ids = TokenCache(encoder).ids(texts)
    tokenize_all_s = C.now() - t0
    cached = [with_text(item, enc) for item, enc in zip(plain, encoded)]
    tokenized = [with_text(item, ids) for item, ids in zip(plain, token_ids)]
    chunks = [list(range(s, min(s + args.batch_size, n))) for s in range(0, n, args.batch_size)]

    models = {"graph_only": make_model("graph_only", "none", args, 0),
              "fused_cached": make_model(args.fusion, "none", args, encoder.dim)}
    for name, (fusion, finetune) in FINETUNE_SIDES.items():
        models[name] = make_model(fusion, finetune, args, encoder.dim)
    models = {name: model.to(device) for name, model in models.items()}
    optimizers = {name: make_optimizer(model) for name, model in models.items()}
    models["fused_reencode"] = models["fused_cached"]  # same model; only where the text comes from differs
    optimizers["fused_reencode"] = optimizers["fused_cached"]

    def items_for(name: str, chunk: list[int]):
        if name == "graph_only":
            return [plain[i] for i in chunk]
        if name == "fused_reencode":
            fresh = encoder.encode([texts[i] for i in chunk])
            return [with_text(plain[i], enc) for i, enc in zip(chunk, fresh)]
        if models[name].text_encoder is not None:
            return [tokenized[i] for i in chunk]
        return [cached[i] for i in chunk]

    def side(name: str):
        model, opt = models[name], optimizers[name]

        def run() -> None:
            model.train()
            for chunk in chunks:
                batch = Batch.from_data_list(items_for(name, chunk), follow_batch=FOLLOW_BATCH).to(device)
                opt.zero_grad(set_to_none=True)
                loss = torch.nn.functional.mse_loss(model.forward_normalized(batch).prediction, batch.y)
                loss.backward()
                opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
        return run

    sides = {name: side(name) for name in ["graph_only", "fused_cached", "fused_reencode", *FINETUNE_SIDES]}
    for fn in sides.values():  # warm-up (also creates every optimizer state)
        fn()
    steps = len(chunks)
    C.log(f"text_overhead: {n} structures, {steps} steps/round, {args.repeats} rounds, {len(sides)} sides")
    times = C.interleaved(sides, args.repeats)
    memory = {name: measure_memory(fn, device, release_free_memory) for name, fn in sides.items()}
    result = {
        "benchmark": "text_overhead",
        "quick": args.quick,
        "environment": C.environment(args.threads),
        "setup": {
            "structures": n, "batch_size": args.batch_size, "steps_per_round": steps, "repeats": args.repeats,
            "alignn_layers": args.alignn_layers, "gcn_layers": args.gcn_layers, "hidden": args.hidden,
            "fusion": args.fusion, "encoder": encoder.model_id, "encoder_dim": encoder.dim,
            "max_length": args.max_length, "finetune_layers": args.finetune_layers, "device": str(device),
            "median_tokens": float(sorted(e.length for e in encoded)[len(encoded) // 2]),
            "truncated_texts": sum(e.truncated for e in encoded),
            "texts": "mp36k.desc_jarvis.jsonl.gz (jarvis describer)",
            "step": "collate + forward + MSE + backward + AdamW (re-encode side: + tokenise + frozen MiniLM "
                    "forward; finetune sides: MiniLM forward and backward on cached token ids)",
            "sides": {name: {"fusion": f, "finetune": ft} for name, (f, ft) in FINETUNE_SIDES.items()},
            "encode_all_once_s": encode_all_s,
            "tokenize_all_once_s": tokenize_all_s,
        },
        "sides": {name: {"step_s": C.median(t) / steps, "round_s": t,
                         "trained_parameters": sum(p.numel() for p in models[name].parameters() if p.requires_grad),
                         "trained_text_encoder_parameters": sum(
                             p.numel() for p in models[name].text_encoder_parameters()),
                         **memory[name]} for name, t in times.items()},
        "ratios": {
            "fused_cached_over_graph_only": C.paired_ratio(times["fused_cached"], times["graph_only"]),
            "fused_reencode_over_graph_only": C.paired_ratio(times["fused_reencode"], times["graph_only"]),
            "reencode_over_cached": C.paired_ratio(times["fused_reencode"], times["fused_cached"]),
            "fused_cached_over_graph_only_best_rounds": C.best_ratio(times["fused_cached"], times["graph_only"]),
            "reencode_over_cached_best_rounds": C.best_ratio(times["fused_reencode"], times["fused_cached"]),
            **{f"{name}_over_graph_only": C.paired_ratio(times[name], times["graph_only"]) for name in FINETUNE_SIDES},
            **{f"{name}_over_fused_cached": C.paired_ratio(times[name], times["fused_cached"])
               for name in FINETUNE_SIDES},
        },
    }
    C.emit(result)
    return result


def measure_memory(run, device, release) -> dict[str, float]:
    """Peak resident memory (and CUDA memory) of one more round of ``run``, after freeing what can be freed."""
    import torch

    gc.collect()
    release()
    before = C.rss_mb()
    supported = C.reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    run()
    peak = C.peak_rss_mb()
    out = {"peak_rss_mb": peak, "step_extra_mb": peak - before if supported else float("nan")}
    if device.type == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


if __name__ == "__main__":
    main()
