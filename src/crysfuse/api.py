"""Python entry points for notebooks and scripts; the CLI calls the same functions (one implementation, two
front doors).

>>> import crysfuse                                    # doctest: +SKIP
>>> model = crysfuse.load("runs/gap-simplified")       # doctest: +SKIP
>>> result = model.predict([structure_a, "NaCl.cif"])  # doctest: +SKIP
>>> result.prediction, result.gates["gate"]            # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crysfuse.config import Config
from crysfuse.data.demo import write_demo_dataset
from crysfuse.data.objects import records_from_structures
from crysfuse.data.pipeline import prepare
from crysfuse.data.records import Rejection
from crysfuse.data.sources import load_config_records, with_default_target
from crysfuse.io import write_csv_atomic
from crysfuse.predict import Predictions, combine_members, predict_items
from crysfuse.rundir import CheckpointError, LoadedModel, load_run, write_predictions_csv
from crysfuse.training import run as training_run  # called as training_run.train: one place to wrap training


@dataclass
class PredictionResult:
    """Predictions for the usable inputs, in input order.

    Attributes:
        ids: Input ids (given, or ``"0"``, ``"1"``, ... by position).
        prediction: ``[M]`` predictions in the run's target units.
        gates: Per-sample gate values by diagnostics key (e.g. ``gate``, ``effective``), each ``[M]``.
        rejections: Inputs that could not be used, with the reason.
    """

    ids: list[str]
    prediction: np.ndarray
    gates: dict[str, np.ndarray] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    spread: np.ndarray | None = None
    """For an ensemble (:func:`load` of several runs): the std of the members' predictions per crystal;
    ``prediction`` is then their mean."""

    def to_dataframe(self) -> Any:
        """A pandas DataFrame with columns ``id``, ``prediction`` (and ``spread``) and one per gate."""
        import pandas as pd

        spread = {} if self.spread is None else {"spread": self.spread}
        return pd.DataFrame({"id": self.ids, "prediction": self.prediction, **spread, **self.gates})


class Predictor:
    """A trained run ready for inference: graphs, descriptions and embeddings are made with the run's own
    settings (describer, encoder, graph cutoffs), exactly as ``crysfuse predict`` does."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded

    @property
    def config(self) -> Config:
        return self.loaded.config

    @property
    def model(self) -> Any:
        """The underlying :class:`~crysfuse.models.crysfuse.CrysFuseModel` (eval mode)."""
        return self.loaded.model

    def predict(
        self,
        structures: Sequence[Any],
        texts: Sequence[str | None] | None = None,
        *,
        ids: Sequence[str] | None = None,
        batch_size: int = 64,
    ) -> PredictionResult:
        """Predict for crystals given as pymatgen ``Structure``, jarvis ``Atoms``, ASE ``Atoms``, file paths,
        CIF/POSCAR strings or structure dicts.

        Args:
            structures: The crystals.
            texts: Their descriptions; ``None`` (or a ``None`` entry) describes the crystal on the fly with the
                run's describer. Ignored by models that read no text.
            ids: Names for the results (default: positions as strings).
            batch_size: Inference batch size.
        """
        loaded = records_from_structures(structures, ids=ids, texts=texts, require_target=False)
        return self._predict_records(loaded.records, loaded.rejections, batch_size)

    def _predict_records(self, records: list, rejections: list[Rejection], batch_size: int) -> PredictionResult:
        config = self.config.replace({"data.text_file": None})
        prepared = prepare(records, config, uses_text=self.model.uses_text)
        ids = [r.id for r in records if r.id in prepared.items]
        predictions = predict_items(self.model, ids, [prepared.items[i] for i in ids], batch_size=batch_size)
        return PredictionResult(ids=ids, prediction=predictions.prediction, gates=predictions.gates,
                                rejections=rejections + prepared.rejections)


class EnsemblePredictor:
    """Several runs of one target (e.g. seeds) used together: the mean of their predictions, and their
    spread (std over members) as an uncertainty per crystal."""

    def __init__(self, members: Sequence[Predictor], names: Sequence[str] | None = None) -> None:
        check_same_target([m.config for m in members], names or [f"member {i}" for i in range(len(members))])
        self.members = list(members)

    @property
    def config(self) -> Config:
        return self.members[0].config

    def predict(self, structures: Sequence[Any], texts: Sequence[str | None] | None = None, *,
                ids: Sequence[str] | None = None, batch_size: int = 64) -> PredictionResult:
        """As :meth:`Predictor.predict`, with ``prediction`` the members' mean and ``spread`` their std; a
        crystal is kept when every member could use it. Gates are not combined."""
        results = [m.predict(structures, texts, ids=ids, batch_size=batch_size) for m in self.members]
        kept, mean, spread = combine_members([(r.ids, r.prediction) for r in results])
        rejections = list({(r.id, r.reason): r for result in results for r in result.rejections}.values())
        return PredictionResult(ids=kept, prediction=mean, rejections=rejections, spread=spread)


def check_same_target(configs: Sequence[Config], names: Sequence[str]) -> None:
    """An ensemble's runs predict one quantity: the same ``data.target``; else a :class:`CheckpointError`."""
    targets = {c.data.target for c in configs}
    if len(targets) > 1:
        listed = ", ".join(f"{n} → '{c.data.target}'" for n, c in zip(names, configs))
        raise CheckpointError(f"an ensemble needs runs of one target, got {len(targets)} targets: {listed}")


def load(run_dir: str | Path | Sequence[str | Path], *, device: str = "cpu") -> Predictor | EnsemblePredictor:
    """Load a finished run directory (safetensors weights + JSON config; nothing is unpickled); a list of
    several run directories of one target loads them as an :class:`EnsemblePredictor`."""
    if isinstance(run_dir, (str, Path)):
        return Predictor(load_run(run_dir, device=device))
    runs = list(run_dir)
    if len(runs) == 1:
        return Predictor(load_run(runs[0], device=device))
    return EnsemblePredictor([Predictor(load_run(r, device=device)) for r in runs], [str(r) for r in runs])


def train(config: Config | dict[str, Any] | str | Path, *, resume: bool | None = None) -> training_run.RunResult:
    """Train as ``crysfuse train`` does; ``config`` is a :class:`Config`, a nested dict, or a YAML/JSON path.

    Returns:
        :class:`crysfuse.training.run.RunResult` with ``run_dir`` and ``summary``.
    """
    if isinstance(config, (str, Path)):
        config = Config.load(config)
    elif isinstance(config, dict):
        config = Config.from_dict(config)
    return training_run.train(with_default_target(config), resume=resume)


DEMO_SETTINGS = {
    "data.target": "e_form",
    "model.dim_hidden": 64,
    "model.num_alignn_layers": 2,
    "model.num_gcn_layers": 2,
    "train.batch_size": 32,
    "train.learning_rate": 0.003,
    "train.patience": None,
    "train.progress_bar": False,
}
"""The demo's model and training settings (small, so it runs in minutes on a laptop CPU)."""


def run_demo(out: str | Path, *, num_structures: int = 240, epochs: int = 8,
             fusions: Sequence[str] = ("graph_only", "simplified")) -> list[training_run.RunResult]:
    """``crysfuse demo``: the embedded EMT alloy data set (built once into ``out``), one run per fusion variant."""
    out = Path(out)
    data_path = out / "emt_alloys.json"
    if not data_path.exists():
        write_demo_dataset(data_path, num_structures)
    base = Config().replace(DEMO_SETTINGS)
    return [
        train(base.replace({"data.path": str(data_path), "data.cache_dir": str(out / "cache"), "fusion.name": fusion,
                            "train.epochs": epochs, "experiment.run_dir": str(out / fusion)}))
        for fusion in fusions
    ]


def predict_ensemble_source(run_dirs: Sequence[str | Path], data: str | Path, *, out: str | Path | None = None,
                            **options: Any) -> tuple[Predictions, np.ndarray, list[Rejection]]:
    """:func:`predict_source` with several runs of one target: the mean prediction per crystal, its spread
    (std over the members) and the rejections; ``out`` gets ``id,target,prediction,spread,members``."""
    check_same_target([load_run(r).config for r in run_dirs], [str(r) for r in run_dirs])
    results = [predict_source(r, data, **options) for r in run_dirs]
    kept, mean, spread = combine_members([(p.ids, p.prediction) for p, _ in results])
    targets = dict(zip(results[0][0].ids, results[0][0].target))
    predictions = Predictions(ids=kept, target=np.array([targets[i] for i in kept], dtype=float), prediction=mean,
                              precision=results[0][0].precision)
    if out is not None:
        write_csv_atomic(Path(out), ["id", "target", "prediction", "spread", "members"],
                         ([i, repr(float(t)), repr(float(p)), repr(float(s)), len(run_dirs)]
                          for i, t, p, s in zip(kept, predictions.target, mean, spread)))
    rejections = list({(r.id, r.reason): r for _, rej in results for r in rej}.values())
    return predictions, spread, rejections


def predict_source(
    run_dir: str | Path,
    data: str | Path,
    *,
    out: str | Path | None = None,
    text_file: str | None = None,
    batch_size: int = 64,
    precision: str | None = None,
) -> tuple[Predictions, list[Rejection]]:
    """Predict every usable record of a data source with the model of ``run_dir`` (``crysfuse predict``).

    Texts come from the source itself, then ``text_file`` (default: the run's own ``data.text_file``), then
    the run's describer. The run's target column is read when present but not required. ``precision``
    defaults to the run's ``train.precision`` (what its own test predictions used).
    """
    loaded = load_run(run_dir)
    config = loaded.config
    if text_file is not None:
        config = config.replace({"data.text_file": text_file})
    records = load_config_records(config, path=data, require_target=False, whole_source=True)
    prepared = prepare(records.records, config, uses_text=loaded.model.uses_text)
    ids = list(prepared.items)
    predictions = predict_items(loaded.model, ids, [prepared.items[i] for i in ids], batch_size=batch_size,
                                precision=precision)
    if out is not None:
        write_predictions_csv(Path(out), predictions)
    return predictions, records.rejections + prepared.rejections
