"""The configuration reference (``docs/configuration.md``), generated from the config classes themselves.

Every key of :class:`crysfuse.config.Config` is listed with its type, its default and the docstring written
right after the field in ``config.py`` (read with :mod:`ast`, since Python keeps no attribute docstrings at
run time). Registry-backed keys also list the names currently registered. Because the page is generated, it
cannot drift from the code: ``tests/test_docs.py`` checks that the committed page equals this output.

Regenerate with::

    crysfuse config --reference > docs/configuration.md

Nothing is computed at import time.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import json
import re
import textwrap
import typing
from dataclasses import dataclass
from typing import Any

from crysfuse.config import TRAIN_FLAGS, Config
from crysfuse.data.corruption import MODES, STRATEGIES
from crysfuse.data.describe import DESCRIBERS
from crysfuse.fusion import FUSION

__all__ = ["ConfigField", "ConfigSection", "field_docstrings", "iter_sections", "render_reference"]

REGENERATE = "crysfuse config --reference > docs/configuration.md"


@dataclass
class ConfigField:
    """One leaf key of the config tree."""

    key: str
    """Dotted key, e.g. ``train.epochs`` (what ``--set`` takes)."""
    type: str
    """The annotation as written in ``config.py``, e.g. ``int | None``."""
    default: Any
    """The default value (JSON-able: tuples become lists)."""
    doc: str
    """The field's docstring ('' when it has none)."""


@dataclass
class ConfigSection:
    """One dataclass of the tree (``data``, ``train``, ``train.text_corruption``, ...)."""

    key: str
    cls: type
    doc: str
    fields: list[ConfigField]


def field_docstrings(cls: type) -> dict[str, str]:
    """``{field name: docstring}`` for the string literals that directly follow annotated fields of ``cls``."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    class_def = next(node for node in tree.body if isinstance(node, ast.ClassDef))
    docs: dict[str, str] = {}
    body = class_def.body
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = inspect.cleandoc(following.value.value)
    return docs


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:  # pragma: no cover - every config field has a default
        return None
    return json.loads(json.dumps(value))


def iter_sections() -> list[ConfigSection]:
    """Every section of :class:`~crysfuse.config.Config`, depth first (``train`` before ``train.text_corruption``)."""
    sections: list[ConfigSection] = []

    def visit(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        docs = field_docstrings(cls)
        leaves: list[ConfigField] = []
        nested: list[tuple[type, str]] = []
        for field in dataclasses.fields(cls):
            key = f"{prefix}.{field.name}" if prefix else field.name
            if dataclasses.is_dataclass(hints[field.name]):
                nested.append((hints[field.name], key))
                continue
            annotation = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
            leaves.append(ConfigField(key, annotation, _default(field), docs.get(field.name, "")))
        if prefix:
            sections.append(ConfigSection(prefix, cls, inspect.cleandoc(cls.__doc__ or ""), leaves))
        for child, key in nested:
            visit(child, key)

    visit(Config, "")
    return sections


def _choices() -> dict[str, list[str]]:
    """Names a key accepts, read from the registries (so new variants appear without editing the docs)."""
    return {
        "fusion.name": FUSION.names(),
        "text.describer": DESCRIBERS.names(),
        "train.text_corruption.strategies": list(STRATEGIES),
        "train.text_corruption.modes": list(MODES),
    }


_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")


def _markdown(text: str) -> str:
    """reST-flavoured docstring text as Markdown: ``code`` → `code`, :class:`x` → `x`, paragraphs kept."""
    text = _ROLE.sub(r"``\1``", text).replace("``", "`")
    paragraphs = [" ".join(line.strip() for line in block.splitlines()) for block in re.split(r"\n\s*\n", text)]
    return "\n\n".join(p for p in paragraphs if p)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _cli_flags() -> dict[str, str]:
    """``config key → crysfuse train flag``."""
    return {key: "--" + flag.replace("_", "-") for flag, key in TRAIN_FLAGS.items()}


def render_reference() -> str:
    """The whole Markdown page of ``docs/configuration.md``."""
    sections = iter_sections()
    choices = _choices()
    flags = _cli_flags()
    out = [
        "# Configuration reference",
        "",
        f"<!-- Generated from src/crysfuse/config.py by `{REGENERATE}`. Do not edit by hand. -->",
        "",
        "Every run is described by one config tree, `crysfuse.Config`; the run saves it, fully resolved, as",
        "`config.json`, and the run can be reproduced from that file alone. This page is generated from the",
        "config classes (`src/crysfuse/config.py`), so it lists exactly the keys the code accepts. Regenerate it",
        f"with `{REGENERATE}`.",
        "",
        "## Setting values",
        "",
        "Values are resolved in this order, later winning:",
        "",
        "1. the defaults below;",
        "2. a YAML or JSON file, `--config FILE` (a partial tree is fine: missing keys keep their defaults);",
        "3. the flags of `crysfuse train` (`--data`, `--epochs`, ..., table below);",
        "4. `--set section.key=value` overrides, in the order given; values are parsed as YAML scalars",
        "   (`--set train.patience=null`, `--set fusion.middle_layers=[1,2]`; an empty string needs YAML quotes",
        "   inside shell quotes: `--set \"text.describer=''\"`).",
        "",
        "Unknown keys and values of the wrong type are errors, never silently ignored. `crysfuse config --show`",
        "prints the resolved tree as YAML; its output is a valid `--config` file:",
        "",
        "```bash",
        "crysfuse config --show --set fusion.name=gated --set train.epochs=50 > gated.yaml",
        "crysfuse config --show --config gated.yaml --set train.seed=1",
        "```",
        "",
        "| flag of `crysfuse train` | key |",
        "|---|---|",
    ]
    out += [f"| `{flag}` | `{key}` |" for key, flag in flags.items()]
    out += ["", "## Sections", ""]
    out += [f"- [`{s.key}`](#{s.key.replace('.', '')}) — {_markdown(s.doc).splitlines()[0]}" for s in sections]
    for section in sections:
        out += ["", f"## `{section.key}`", "", _markdown(section.doc), "",
                "| key | type | default | description |", "|---|---|---|---|"]
        for field in section.fields:
            doc = _markdown(field.doc)
            if field.key in choices:
                doc = (doc + " " if doc else "") + "One of: " + ", ".join(f"`{c}`" for c in choices[field.key]) + "."
            if field.key in flags:
                doc = (doc + " " if doc else "") + f"Flag: `{flags[field.key]}`."
            out.append(f"| `{field.key}` | `{_cell(field.type)}` | `{_cell(_value(field.default))}` | "
                       f"{_cell(doc) or '—'} |")
    return "\n".join(out) + "\n"
