"""The error types that mean "bad input or settings": the CLI reports them in one line with exit code 2
(anything else is a bug and keeps its traceback)."""

from __future__ import annotations

from crysfuse.analysis.explain_errors import NotExplainableError, TokenAlignmentError
from crysfuse.config import ConfigError
from crysfuse.data.records import DataSourceError
from crysfuse.data.splits import SplitError
from crysfuse.registry import UnknownNameError
from crysfuse.rundir import CheckpointError, RunDirectoryError
from crysfuse.text.encoder import EncoderUnavailableError

USER_ERRORS: tuple[type[BaseException], ...] = (
    CheckpointError, ConfigError, DataSourceError, SplitError, EncoderUnavailableError, UnknownNameError,
    RunDirectoryError, NotExplainableError, TokenAlignmentError,
)
