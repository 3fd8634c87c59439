"""Every code example in README.md and docs/*.md runs, so the documentation cannot rot.

Conventions (also in docs/index.md, "How the examples are tested"):

* ```` ```python ```` blocks are executed; the blocks of one page share one namespace, like a notebook.
* ```` ```bash ```` (``sh``, ``shell``) blocks are executed line by line (``\\`` continues a line, ``#`` starts a
  comment). ``crysfuse ...`` (also ``.venv/bin/crysfuse``) runs in-process through ``crysfuse.cli.main``, with
  a trailing ``> FILE`` redirect and leading ``NAME=value`` assignments supported; any other line runs in
  ``bash`` with the venv's ``bin`` first on ``PATH``. Every line must exit with 0.
* A block whose info string has ``file=NAME`` (```` ```yaml file=gap.yaml ````) is written to ``NAME`` instead
  (GitHub shows only the language).
* ```` ```console ````, ```` ```text ````, ```` ```json ```` ... are output or formats and are not run. Every
  fence must name a language, so nothing is left unchecked by accident.
* ``<!-- docs-test: skip REASON -->`` on the line before a python/bash fence skips it (it needs a GPU, a
  cluster, the network or a file the reader provides); the reason is required.

Each page runs in its own working directory ``<tmp>/work`` next to a ``<tmp>/shared`` link to the real shared
data, so ``../shared/data/...`` resolves as it does from the repository root; one cache (``CRYSFUSE_CACHE``)
serves all pages. To keep the suite fast the examples run on *tiny data*: every data source is cut to its
first 40 records (mp36k is read from a 40-record slice), ``train.epochs`` is capped at 1 and the model is
shrunk (the page's own ``--set`` model sizes are capped too) — the commands, flags, file names and outputs
that the pages rely on are exercised for real.

``test_configuration_reference_is_current`` checks that docs/configuration.md is the generator's output, and
``test_fusion_variant_table_is_current`` the variant table of docs/fusion.md.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import require_shared

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MP36K = SHARED / "data" / "mp36k.json.gz"
TINY_LIMIT = 40
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUN_LANGS = {"python", "bash", "sh", "shell"}
SKIP_MARK = re.compile(r"^<!--\s*docs-test:\s*skip\b\s*(.*?)\s*-->$")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    attrs: dict[str, str]
    code: str
    skip: str | None = None
    """The skip reason ('' for a marker without one); None when not skipped."""

    @property
    def where(self) -> str:
        page = self.page.relative_to(REPO) if self.page.is_relative_to(REPO) else self.page
        return f"{page}:{self.line}"


def parse_blocks(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, info, indent = match["fence"], match["info"].strip(), len(match["indent"])
        words = info.split()
        lang = words[0].lower() if words else ""
        attrs = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        previous = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        skip = SKIP_MARK.match(previous)
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence[0] * len(fence))
                                      and not lines[j].strip().strip(fence[0])):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        blocks.append(Block(page, i + 1, lang, attrs, "\n".join(body) + "\n", skip[1] if skip else None))
        i = j + 1
    return blocks


def command_lines(code: str) -> list[str]:
    """Logical lines of a bash block (``\\`` continuations joined; blank and comment lines dropped)."""
    out, current = [], ""
    for raw in code.splitlines():
        piece = raw.strip() if current else raw
        if piece.rstrip().endswith("\\"):
            current += piece.rstrip()[:-1].rstrip() + " "
            continue
        current += piece
        if current.strip() and not current.strip().startswith("#"):
            out.append(current.strip())
        current = ""
    if current.strip():
        out.append(current.strip())
    return out


# ------------------------------------------------------------------------------------------- tiny mode


def _run_module():
    for name in ("crysfuse.training.run", "crysfuse.train.run"):
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError:
            continue
    raise ModuleNotFoundError("crysfuse.training.run")


def shrink(config):
    """The config cut down for the docs test: 1 epoch, at most 40 records, a tiny model."""
    middle = max(config.fusion.middle_layers, default=-1) + 1
    m, f, t = config.model, config.fusion, config.train
    return config.with_overrides([
        f"data.limit={min(config.data.limit or TINY_LIMIT, TINY_LIMIT)}",
        f"model.dim_hidden={min(m.dim_hidden, 32)}",
        f"model.dim_embedding={min(m.dim_embedding, 16)}",
        f"model.num_alignn_layers={min(m.num_alignn_layers, max(1, middle))}",
        f"model.num_gcn_layers={min(m.num_gcn_layers, 1)}",
        f"model.dim_projection={min(m.dim_projection, 16)}",
        f"model.dim_head={min(m.dim_head, 16)}",
        f"fusion.dim_hidden={min(f.dim_hidden, 32)}",
        f"fusion.num_heads={min(f.num_heads, 2)}",
        f"fusion.middle_dim_hidden={min(f.middle_dim_hidden, 32)}",
        f"train.epochs={min(t.epochs, 1)}",
        f"train.batch_size={min(t.batch_size, 8)}",
        f"train.text_corruption.variants={min(t.text_corruption.variants, 1)}",
        "train.progress_bar=false",
    ])


@pytest.fixture(scope="session")
def docs_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("docs_cache")


@pytest.fixture(scope="session")
def mp36k_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    if not MP36K.exists():
        return None
    with gzip.open(MP36K, "rt", encoding="utf-8") as handle:
        records = json.load(handle)[:TINY_LIMIT]
    path = tmp_path_factory.mktemp("docs_data") / "mp36k_tiny.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


@pytest.fixture
def tiny_mode(monkeypatch: pytest.MonkeyPatch, docs_cache: Path, mp36k_tiny: Path | None) -> None:
    """Patch crysfuse so every training and data load in the examples is tiny (see the module docstring)."""
    # imported before patching, so that the load_records they imported is replaced
    import crysfuse.analysis.diagnose
    import crysfuse.analysis.robustness
    import crysfuse.api
    import crysfuse.cli  # noqa: F401
    from crysfuse.data import sources

    run_module = _run_module()
    original_train = run_module.train
    original_load = sources.load_records

    def train(config, *args, **kwargs):
        return original_train(shrink(config), *args, **kwargs)

    def load_records(path, target, *, limit=None, **kwargs):
        if mp36k_tiny is not None and not str(path).startswith("jarvis:") and Path(path).resolve() == MP36K:
            path = mp36k_tiny
        return original_load(path, target, limit=min(limit or TINY_LIMIT, TINY_LIMIT), **kwargs)

    monkeypatch.setattr(run_module, "train", train)
    for module in [m for name, m in list(sys.modules.items()) if name.startswith("crysfuse") and m is not None]:
        if getattr(module, "load_records", None) is original_load:
            monkeypatch.setattr(module, "load_records", load_records)
    monkeypatch.setenv("CRYSFUSE_CACHE", str(docs_cache))
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


# ------------------------------------------------------------------------------------------ running


@dataclass
class PageRunner:
    workdir: Path
    namespace: dict = field(default_factory=lambda: {"__name__": "__docs__"})

    def run(self, block: Block) -> None:
        if "file" in block.attrs:
            target = self.workdir / block.attrs["file"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code, encoding="utf-8")
        elif block.lang == "python":
            exec(compile(block.code, block.where, "exec"), self.namespace)  # noqa: S102 - our own docs
        elif block.lang in {"bash", "sh", "shell"}:
            for line in command_lines(block.code):
                self.run_line(block, line)

    def run_line(self, block: Block, line: str) -> None:
        words = shlex.split(line, comments=True)
        env = {}
        while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            name, value = words.pop(0).split("=", 1)
            env[name] = value
        in_process = bool(words) and (words[0] == "crysfuse" or words[0].endswith("/crysfuse"))
        if in_process and not {"|", "||", "&&", ";", "<", ">>", "&"} & set(words):
            redirect = None
            if len(words) >= 2 and words[-2] == ">":
                redirect, words = self.workdir / words[-1], words[:-2]
            assert ">" not in words, f"{block.where}: only a trailing '> FILE' redirect is supported: {line}"
            code = self.crysfuse(words[1:], env, redirect)
        else:
            result = subprocess.run(["bash", "-c", line], check=False, cwd=self.workdir, env={**os.environ, **env},
                                    capture_output=True, text=True, timeout=600)
            code = result.returncode
            if code:
                print(result.stdout[-3000:], result.stderr[-3000:], sep="\n")
        assert code == 0, f"{block.where}: `{line}` exited with {code}"

    def crysfuse(self, argv: list[str], env: dict[str, str], redirect: Path | None) -> int:
        from crysfuse.cli import main

        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        try:
            with contextlib.ExitStack() as stack:
                if redirect is not None:
                    stack.enter_context(contextlib.redirect_stdout(stack.enter_context(
                        redirect.open("w", encoding="utf-8"))))
                try:
                    return main(argv)
                except SystemExit as exit_:
                    return 0 if exit_.code in (None, 0) else (exit_.code if isinstance(exit_.code, int) else 1)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def page_id(page: Path) -> str:
    return str(page.relative_to(REPO))


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_mode: None) -> None:
    blocks = [b for b in parse_blocks(page) if b.skip is None and (b.lang in RUN_LANGS or "file" in b.attrs)]
    if not blocks:
        pytest.skip("no runnable examples")
    require_shared(SHARED)
    workdir = tmp_path / "work"
    workdir.mkdir()
    (tmp_path / "shared").symlink_to(SHARED, target_is_directory=True)
    monkeypatch.chdir(workdir)
    runner = PageRunner(workdir)
    for block in blocks:
        runner.run(block)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_fences_are_tagged(page: Path) -> None:
    """Every fence names a language, and a skipped runnable block says why, so no example is unchecked by accident."""
    for block in parse_blocks(page):
        assert block.lang, (f"{block.where}: fence without a language; use python/bash (run by tests/test_docs.py) "
                            "or console/text/json/yaml/... (not run)")
        if block.skip is not None:
            assert block.skip, f"{block.where}: '<!-- docs-test: skip -->' needs a reason"


LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_relative_links_resolve(page: Path) -> None:
    """Every relative link of a page (outside code blocks) points at a file or folder of the repository."""
    in_fence = False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        for match in LINK.finditer(line):
            target = match["target"].split("#", 1)[0]
            if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # an anchor on the same page, or a URL
            assert (page.parent / target).exists(), f"{page_id(page)}:{number}: broken link {match['target']}"


def test_configuration_reference_is_current() -> None:
    from crysfuse.config_reference import REGENERATE, render_reference

    committed = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == render_reference(), (
        f"docs/configuration.md is out of date with src/crysfuse/config.py; regenerate it with `{REGENERATE}`"
    )


def test_fusion_variant_table_is_current() -> None:
    """docs/fusion.md's variant table is rendered from the registered variants' declarations."""
    from crysfuse.config_reference import render_variant_table

    committed = (REPO / "docs" / "fusion.md").read_text(encoding="utf-8")
    assert render_variant_table() in committed, (
        "the variant table in docs/fusion.md is out of date; replace it with the output of `crysfuse models --markdown`"
    )


def test_reference_lists_every_key() -> None:
    from crysfuse.config import Config
    from crysfuse.config_reference import field_docstrings, iter_sections

    keys = {f.key: f for s in iter_sections() for f in s.fields}

    def leaves(data: dict, prefix: str = "") -> set[str]:
        out: set[str] = set()
        for name, value in data.items():
            key = f"{prefix}{name}"
            out |= leaves(value, key + ".") if isinstance(value, dict) else {key}
        return out

    assert set(keys) == leaves(Config().to_dict())
    assert keys["train.epochs"].default == 100 and keys["data.limit"].type == "int | None"
    assert keys["fusion.warmup_steps"].doc.startswith("``warmup``")
    from crysfuse.config import MonitorConfig

    assert set(field_docstrings(MonitorConfig)) == {f for f in MonitorConfig.__dataclass_fields__}


def test_parse_blocks_and_lines(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n<!-- docs-test: skip needs a GPU -->\n```bash\ncrysfuse train \\\n  --x 1  # c\n```\n"
        "```yaml file=a.yaml\ntrain:\n  epochs: 1\n```\n  ```python\n  x = 1\n  ```\n", encoding="utf-8")
    blocks = parse_blocks(page)
    assert [(b.lang, b.skip, b.attrs) for b in blocks] == [
        ("bash", "needs a GPU", {}), ("yaml", None, {"file": "a.yaml"}), ("python", None, {})]
    assert blocks[2].code == "x = 1\n"
    assert command_lines(blocks[0].code) == ["crysfuse train --x 1  # c"]
