"""The error types that mean "bad input or settings" (reported in one line, exit code 2), gathered lazily."""

from __future__ import annotations


def _user_errors() -> tuple[type[BaseException], ...]:
    from crysfuse.rundir import CheckpointError, RunDirectoryError
    from crysfuse.config import ConfigError
    from crysfuse.data.sources import DataSourceError
    from crysfuse.data.splits import SplitError
    from crysfuse.registry import UnknownNameError
    from crysfuse.text.encoder import EncoderUnavailableError

    return (CheckpointError, ConfigError, DataSourceError, SplitError, EncoderUnavailableError, UnknownNameError,
            RunDirectoryError)


def __getattr__(name: str):  # noqa: ANN202 - module-level lazy attribute
    if name == "USER_ERRORS":
        return _user_errors()
    raise AttributeError(name)
