"""Cost of text in a training step: ``graph_only`` vs a fused variant (``simplified``) reading cached MiniLM
embeddings vs the same variant re-encoding the descriptions with MiniLM every step (what the prior system
did). Every side collates its batch from items inside the timed step (as a DataLoader would); the
re-encoding side also tokenises and encodes the batch's texts (frozen encoder, inference mode).

Prints one JSON object. Usage::

    python benchmarks/text_overhead.py            # 64 structures, batch 32, 4+4 layers, hidden 256
    python benchmarks/text_overhead.py --quick
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C


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
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.structures, args.batch_size, args.hidden = 8, 4, 32
        args.alignn_layers, args.gcn_layers, args.repeats, args.max_atoms = 1, 1, 1, 12
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    C.setup_threads(args.threads)
    import torch
    from torch_geometric.data import Batch
    from train_step import make_crysfuse

    from crysfuse.data.dataset import FOLLOW_BATCH, make_crystal_data
    from crysfuse.data.graphs import build_crystal_graph
    from crysfuse.data.dataset import with_text
    from crysfuse.data.sources import structure_from_jarvis_dict
    from crysfuse.text.encoder import EncoderSettings, TextEncoder

    torch.manual_seed(args.seed)
    rows = C.load_mp36k(args.structures, seed=args.seed, max_atoms=args.max_atoms)
    n = len(rows) - len(rows) % args.batch_size or len(rows)
    rows = rows[:n]
    texts_by_id = C.load_texts([r["id"] for r in rows])
    texts = [texts_by_id.get(r["id"]) for r in rows]
    empty_tokens, empty_pooled = torch.zeros(0, 1, dtype=torch.float16), torch.zeros(1, dtype=torch.float16)
    plain = [make_crystal_data(build_crystal_graph(structure_from_jarvis_dict(r["atoms"])), tokens=empty_tokens,
                               pooled=empty_pooled, target=float(r["e_form"]), index=i) for i, r in enumerate(rows)]
    encoder = TextEncoder(EncoderSettings("minilm", max_length=args.max_length, batch_size=args.batch_size))
    t0 = C.now()
    encoded = encoder.encode(texts)
    encode_all_s = C.now() - t0
    cached = [with_text(item, enc) for item, enc in zip(plain, encoded)]
    chunks = [list(range(s, min(s + args.batch_size, n))) for s in range(0, n, args.batch_size)]

    models = {"graph_only": make_crysfuse("graph_only", args, 0),
              "fused_cached": make_crysfuse(args.fusion, args, encoder.dim)}
    models["fused_reencode"] = models["fused_cached"]  # same model; only where the text comes from differs
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, m in models.items()
                  if name != "fused_reencode"}
    optimizers["fused_reencode"] = optimizers["fused_cached"]

    def batch_for(name: str, chunk: list[int]):
        if name == "graph_only":
            items = [plain[i] for i in chunk]
        elif name == "fused_cached":
            items = [cached[i] for i in chunk]
        else:
            fresh = encoder.encode([texts[i] for i in chunk])
            items = [with_text(plain[i], enc) for i, enc in zip(chunk, fresh)]
        return Batch.from_data_list(items, follow_batch=FOLLOW_BATCH)

    def side(name: str):
        model, opt = models[name], optimizers[name]

        def run() -> None:
            model.train()
            for chunk in chunks:
                batch = batch_for(name, chunk)
                opt.zero_grad(set_to_none=True)
                loss = torch.nn.functional.mse_loss(model.forward_normalized(batch).prediction, batch.y)
                loss.backward()
                opt.step()
        return run

    sides = {name: side(name) for name in models}
    for fn in sides.values():  # warm-up
        fn()
    C.log(f"text_overhead: {n} structures, {len(chunks)} steps/round, {args.repeats} rounds")
    times = C.interleaved(sides, args.repeats)
    steps = len(chunks)
    lengths = [e.length for e in encoded]
    result = {
        "benchmark": "text_overhead",
        "quick": args.quick,
        "environment": C.environment(args.threads),
        "setup": {
            "structures": n, "batch_size": args.batch_size, "steps_per_round": steps, "repeats": args.repeats,
            "alignn_layers": args.alignn_layers, "gcn_layers": args.gcn_layers, "hidden": args.hidden,
            "fusion": args.fusion, "encoder": encoder.model_id, "encoder_dim": encoder.dim,
            "max_length": args.max_length, "median_tokens": float(sorted(lengths)[len(lengths) // 2]),
            "texts": "mp36k.desc_jarvis.jsonl.gz (jarvis describer)",
            "step": "collate + forward + MSE + backward + AdamW (re-encode side: + tokenise + MiniLM forward)",
            "encode_all_once_s": encode_all_s,
        },
        "sides": {name: {"step_s": C.median(t) / steps, "round_s": t} for name, t in times.items()},
        "ratios": {
            "fused_cached_over_graph_only": C.paired_ratio(times["fused_cached"], times["graph_only"]),
            "fused_reencode_over_graph_only": C.paired_ratio(times["fused_reencode"], times["graph_only"]),
            "reencode_over_cached": C.paired_ratio(times["fused_reencode"], times["fused_cached"]),
            "fused_cached_over_graph_only_best_rounds": C.best_ratio(times["fused_cached"], times["graph_only"]),
            "reencode_over_cached_best_rounds": C.best_ratio(times["fused_reencode"], times["fused_cached"]),
        },
    }
    C.emit(result)
    return result


if __name__ == "__main__":
    main()
