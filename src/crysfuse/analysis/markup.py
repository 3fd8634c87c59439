"""Escaping untrusted strings (record ids, descriptions, labels) for Markdown and HTML outputs."""

from __future__ import annotations

import html
from typing import Any


def escape_markdown(text: Any) -> str:
    """Escape for Markdown text or a table cell: Markdown punctuation gets a backslash, then ``&``, ``<``,
    ``>`` and quotes become HTML entities (so no tag, script or link survives rendering)."""
    escaped = "".join("\\" + ch if ch in "\\`*_[]|~!" else ch for ch in str(text))
    return html.escape(escaped.replace("\n", " "), quote=True)


def escape_html(text: Any) -> str:
    """Escape for HTML text and attribute values."""
    return html.escape(str(text), quote=True)
