"""Preprocessing throughput on a slice of mp36k: graphs (``build_crystal_graph``), descriptions (jarvis
describer, one process), MiniLM embeddings (``TextEncoder``), and reloading all three from the on-disk caches
(``GraphCache``, description cache, ``EmbeddingCache``) in a temporary folder.

Prints one JSON object. Usage::

    python benchmarks/preprocess.py                # 200 structures
    python benchmarks/preprocess.py --quick
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--structures", type=int, default=200)
    p.add_argument("--max-atoms", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.structures, args.max_atoms = 6, 20
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    C.setup_threads(args.threads)
    import numpy as np

    from crysfuse.data.cache import GraphCache, structure_key
    from crysfuse.data.describe import describe_many
    from crysfuse.data.graphs import GraphSettings, build_crystal_graph
    from crysfuse.data.sources import structure_from_jarvis_dict
    from crysfuse.text.cache import EmbeddingCache, encode_cached
    from crysfuse.text.encoder import EncoderSettings, TextEncoder

    rows = C.load_mp36k(args.structures, seed=args.seed, max_atoms=args.max_atoms)
    t0 = C.now()
    structures = [structure_from_jarvis_dict(r["atoms"]) for r in rows]
    parse_s = C.now() - t0
    n = len(structures)
    settings = GraphSettings()
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="crysfuse-bench-") as tmp:
        root = Path(tmp)
        cache = GraphCache(root)
        keys = [structure_key(s, settings) for s in structures]

        t0 = C.now()
        graphs = [build_crystal_graph(s, settings) for s in structures]
        out["graphs_s"] = C.now() - t0
        t0 = C.now()
        for key, g in zip(keys, graphs):
            cache.put(key, g)
        out["graph_cache_write_s"] = C.now() - t0
        t0 = C.now()
        reloaded = [cache.get(key) for key in keys]
        out["graph_cache_reload_s"] = C.now() - t0
        assert all(g is not None for g in reloaded)

        t0 = C.now()
        texts, failures = describe_many(structures, "jarvis", cache_dir=root / "descriptions", workers=1)
        out["describe_s"] = C.now() - t0
        t0 = C.now()
        again, _ = describe_many(structures, "jarvis", cache_dir=root / "descriptions", workers=1)
        out["description_cache_reload_s"] = C.now() - t0
        assert again == texts

        encoder = TextEncoder(EncoderSettings("minilm", max_length=512, batch_size=32))
        encoder.encode(["warm-up"])  # model load is reported separately
        emb_cache = EmbeddingCache(root / "embeddings", encoder.model_id, 512)
        t0 = C.now()
        encoded = encode_cached(encoder, texts, emb_cache)
        out["embed_s"] = C.now() - t0
        t0 = C.now()
        encode_cached(encoder, texts, emb_cache)
        out["embedding_cache_reload_s"] = C.now() - t0
        cache_mb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20

    natoms = [len(s) for s in structures]
    result = {
        "benchmark": "preprocess",
        "quick": args.quick,
        "environment": C.environment(args.threads),
        "setup": {
            "structures": n, "median_atoms": float(np.median(natoms)),
            "source": f"mp36k.json.gz, seeded sample (seed {args.seed}) of the first 4000 records, "
                      f"<= {args.max_atoms} atoms",
            "describer": "jarvis, workers=1", "encoder": encoder.model_id, "max_length": 512,
            "parse_jarvis_dict_to_pymatgen_s": parse_s, "description_failures": len(failures),
            "median_tokens": float(np.median([e.length for e in encoded])), "cache_mb": cache_mb,
        },
        "throughput_per_s": {
            "graphs": n / out["graphs_s"],
            "descriptions": n / out["describe_s"],
            "embeddings": n / out["embed_s"],
        },
        "cache_reload_per_s": {
            "graphs": n / out["graph_cache_reload_s"],
            "descriptions": n / out["description_cache_reload_s"],
            "embeddings": n / out["embedding_cache_reload_s"],
        },
        "seconds": out,
    }
    C.emit(result)
    return result


if __name__ == "__main__":
    main()
