"""Two-stage training (``train.init_from``): the graph side of a new model starts from the weights of a finished
run, typically a ``graph_only`` run of the same ``model`` section; the text side, fusion and head start fresh."""

from __future__ import annotations

import logging
from pathlib import Path

from crysfuse import rundir
from crysfuse.config import ConfigError
from crysfuse.fusion import FUSION
from crysfuse.models.crysfuse import CrysFuseModel

logger = logging.getLogger(__name__)

GRAPH_ENCODER_PREFIX = "encoder."
GRAPH_PROJECTION_PREFIX = "graph_projection."


def check_init_source(source: str | Path, *, fusion: str | None = None) -> Path:
    """``source`` as a path, after checking that it is a finished run directory with its weights (and, given
    ``fusion``, that this variant has a graph encoder to start), before any data is prepared.

    Raises:
        ConfigError: It is not.
    """
    if fusion is not None and not FUSION.get(fusion).uses_graph:
        raise ConfigError(f"train.init_from: fusion {fusion!r} has no graph encoder to start")
    source = Path(source)
    if not rundir.is_finished(source):
        raise ConfigError(f"train.init_from: {source} is not a finished crysfuse run directory")
    if not rundir.weights_path(source).is_file():
        raise ConfigError(f"train.init_from: {source} has no weights ({rundir.WEIGHTS_FILE}); a committed study "
                          "run keeps none, so train the source run here first")
    return source


def initialize_graph_side(model: CrysFuseModel, source: str | Path) -> list[str]:
    """Copy the graph encoder (``encoder.*``, required) and the graph projection (``graph_projection.*``, when
    both models have one) from the finished run directory ``source`` into ``model``, in place.

    Returns:
        The names of the copied tensors (parameters and buffers such as BatchNorm statistics).

    Raises:
        ConfigError: ``model`` has no graph encoder, ``source`` is not a finished run, or its graph side does
            not have the shapes of ``model``'s (a different ``model`` section).
    """
    if model.encoder is None:
        raise ConfigError(f"train.init_from: fusion {model.config.fusion.name!r} has no graph encoder to start")
    source = check_init_source(source)
    donor = rundir.load_run(source).model.state_dict()
    own = model.state_dict()
    wanted = [k for k in own if k.startswith(GRAPH_ENCODER_PREFIX)]
    wanted += [k for k in own if k.startswith(GRAPH_PROJECTION_PREFIX)
               and any(d.startswith(GRAPH_PROJECTION_PREFIX) for d in donor)]
    missing = [k for k in wanted if k not in donor]
    mismatched = [f"{k} {tuple(donor[k].shape)} vs {tuple(own[k].shape)}" for k in wanted
                  if k in donor and donor[k].shape != own[k].shape]
    if missing or mismatched:
        raise ConfigError(f"train.init_from: the graph side of {source} does not fit this model (its model "
                          f"section differs): missing {missing[:3]}, shapes {mismatched[:3]}")
    model.load_state_dict({k: donor[k] for k in wanted}, strict=False)
    logger.info("train.init_from: %d graph-side tensors from %s (encoder%s)", len(wanted), source,
                " and graph projection" if any(k.startswith(GRAPH_PROJECTION_PREFIX) for k in wanted) else "")
    return wanted
