"""Python entry points shared by the CLI and notebooks (one implementation, two front doors)."""

from __future__ import annotations

from pathlib import Path

from crysfuse.checkpoint import load_run
from crysfuse.data.pipeline import prepare
from crysfuse.data.sources import Rejection, load_records
from crysfuse.predict import Predictions, predict_items, write_predictions_csv


def predict_source(
    run_dir: str | Path,
    data: str | Path,
    *,
    out: str | Path | None = None,
    text_file: str | None = None,
    batch_size: int = 64,
) -> tuple[Predictions, list[Rejection]]:
    """Predict every usable record of ``data`` with the model of ``run_dir``.

    Graphs, descriptions and embeddings are made with the run's own settings. The run's target column is
    read when present (so errors can be computed) but is not required.
    """
    loaded = load_run(run_dir)
    config = loaded.config
    if text_file is not None:
        config = config.with_overrides([f"data.text_file={text_file!r}"])
    records = load_records(data, config.data.target, require_target=False)
    prepared = prepare(records.records, config, uses_text=loaded.model.uses_text)
    ids = list(prepared.items)
    predictions = predict_items(loaded.model, ids, [prepared.items[i] for i in ids], batch_size=batch_size)
    if out is not None:
        write_predictions_csv(Path(out), predictions)
    return predictions, records.rejections + prepared.rejections
