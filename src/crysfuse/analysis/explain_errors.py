"""The error types of ``crysfuse explain``, in a module of their own so that :mod:`crysfuse.errors` can name
them without importing the explanation code (and Matplotlib with it)."""

from __future__ import annotations


class NotExplainableError(ValueError):
    """The run's model has no attention over the text (and no middle fusion), or a crystal cannot be found."""


class TokenAlignmentError(ValueError):
    """The tokenizer's tokens of a text do not match the cached token embeddings (other encoder or length)."""
