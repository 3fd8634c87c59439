"""``crysfuse predict``: predictions of a trained run for any data source."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("predict", help="predict with a trained run directory")
    parser.add_argument("--checkpoint", required=True, nargs="+", metavar="RUN",
                        help="run directory of `crysfuse train`; several runs of one target (e.g. seeds) predict "
                             "as an ensemble: the mean, and the spread (std over the runs) per crystal")
    parser.add_argument("--data", required=True, help="JARVIS-style JSON(.gz) or CGCNN folder")
    parser.add_argument("--out", required=True, help="CSV to write: id,target,prediction[,gates]")
    parser.add_argument("--text-file", help="descriptions joined by id (default: the run's own setting)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", help="e.g. 32-true or bf16-mixed (default: the run's train.precision)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from crysfuse.api import predict_ensemble_source, predict_source

    options = {"text_file": args.text_file, "batch_size": args.batch_size, "precision": args.precision}
    if len(args.checkpoint) > 1:
        predictions, _, rejections = predict_ensemble_source(args.checkpoint, args.data, out=args.out, **options)
        kind = f"ensemble of {len(args.checkpoint)} runs: mean and spread"
    else:
        predictions, rejections = predict_source(args.checkpoint[0], args.data, out=args.out, **options)
        kind = "one run"
    print(f"wrote {len(predictions.ids)} predictions to {args.out} ({kind}; {len(rejections)} records rejected; "
          f"precision {predictions.precision})")
    return 0
