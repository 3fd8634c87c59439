"""What several sub-commands share: the config they start from (``--config``), changed by their flags (typed
values, :meth:`crysfuse.config.Config.replace`) and by ``--set KEY=VALUE`` overrides."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from crysfuse.config import Config


def config_from_args(args: argparse.Namespace, flags: Mapping[str, str], *, set_first: bool = False) -> Config:
    """Config file (or defaults) ← ``--preset`` (where the command has it) ← flags that were given (``flags``: argparse dest → dotted key) ← ``--set``
    overrides; with ``set_first`` the flags win over ``--set`` instead."""
    config = Config.load(args.config) if args.config else Config()
    if getattr(args, "preset", None):
        config = config.with_preset(args.preset)
    values = [(key, getattr(args, flag)) for flag, key in flags.items() if getattr(args, flag) is not None]
    if set_first:
        return config.with_overrides(list(args.set)).replace(values)
    return config.replace(values).with_overrides(list(args.set))
