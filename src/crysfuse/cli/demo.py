"""``crysfuse demo``: the whole path offline on an embedded EMT data set, two variants, one table."""

from __future__ import annotations

import argparse
from pathlib import Path

DEMO_SETTINGS = [
    "data.target=e_form",
    "model.dim_hidden=64",
    "model.num_alignn_layers=2",
    "model.num_gcn_layers=2",
    "train.batch_size=32",
    "train.learning_rate=0.003",
    "train.patience=null",
    "train.progress_bar=false",
]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="offline demo: EMT alloys, graph_only vs simplified")
    parser.add_argument("--out", default="demo_runs", help="where the data and run directories go")
    parser.add_argument("--num-structures", type=int, default=240)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--fusions", default="graph_only,simplified", help="comma-separated variants")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from crysfuse.config import Config
    from crysfuse.data.demo import write_demo_dataset
    from crysfuse.training.run import train

    out = Path(args.out)
    data_path = out / "emt_alloys.json"
    if not data_path.exists():
        write_demo_dataset(data_path, args.num_structures)
    results = []
    for fusion in args.fusions.split(","):
        config = Config().with_overrides(DEMO_SETTINGS + [
            f"data.path='{data_path}'", f"data.cache_dir='{out / 'cache'}'", f"fusion.name={fusion}",
            f"train.epochs={args.epochs}", f"experiment.run_dir='{out / fusion}'",
        ])
        results.append(train(config))
    print()
    print(f"{'fusion':<14} {'val MAE':>9} {'test MAE':>9} {'params':>9} {'+fusion':>8} {'seconds':>8}  run directory")
    for result in results:
        s = result.summary
        print(f"{s['fusion']:<14} {s['val_mae']:>9.4f} {s['test_mae']:>9.4f} {s['n_params']:>9,} "
              f"{s['n_params_fusion']:>8,} {s['train_seconds']:>8.1f}  {result.run_dir}")
    print("MAE in eV/atom (EMT formation energy); model selected on validation, test reported once.")
    return 0
