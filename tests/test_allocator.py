"""crysfuse.allocator: glibc malloc settings the CLI applies at start-up when asked (CRYSFUSE_MALLOC=tuned)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from crysfuse.allocator import SETTINGS

ON_GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _settings_in_child(env_value: str | None) -> dict:
    code = ("import json; from crysfuse.allocator import tune_allocator_if_asked, allocator_settings; "
            "first = tune_allocator_if_asked(); "
            "print(json.dumps([first, tune_allocator_if_asked(), allocator_settings()]))")
    env = {"PATH": "/usr/bin:/bin"}
    if env_value is not None:
        env["CRYSFUSE_MALLOC"] = env_value
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout)


@pytest.mark.skipif(not ON_GLIBC, reason="mallopt settings exist on glibc only")
def test_tune_allocator_applies_every_setting_once() -> None:
    first, second, recorded = _settings_in_child("tuned")
    assert first == {name: value for name, (_, value) in SETTINGS.items()}
    assert second == first == recorded


def test_the_c_library_defaults_stay_unless_asked() -> None:
    assert _settings_in_child(None) == [{}, {}, {}]
    assert _settings_in_child("system") == [{}, {}, {}]


@pytest.mark.skipif(not ON_GLIBC, reason="mallopt settings exist on glibc only")
def test_the_cli_applies_the_settings(monkeypatch) -> None:
    from crysfuse import allocator
    from crysfuse.cli import main

    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.setenv("CRYSFUSE_MALLOC", "tuned")
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    assert main(["models"]) == 0
    assert set(allocator.allocator_settings()) == set(SETTINGS)


@pytest.mark.skipif(not ON_GLIBC, reason="malloc_trim exists on glibc only")
def test_release_free_memory_calls_malloc_trim() -> None:
    from crysfuse.allocator import release_free_memory

    assert release_free_memory() is True


def test_training_releases_memory_after_every_epoch(monkeypatch, tmp_path) -> None:
    """The trainer's callbacks include ReleaseMemory, which trims after training and validation epochs."""
    from crysfuse.config import Config
    from crysfuse.training import callbacks
    from crysfuse.training.run import _callbacks

    calls = []
    monkeypatch.setattr(callbacks, "release_free_memory", lambda: calls.append(1) or True)
    found = [c for c in _callbacks(Config(), tmp_path, callbacks.BestWeights(tmp_path), 0.0)
             if isinstance(c, callbacks.ReleaseMemory)]
    assert len(found) == 1
    found[0].on_train_epoch_end(None, None)
    found[0].on_validation_epoch_end(None, None)
    assert len(calls) == 2
    for batch_idx in range(250):
        found[0].on_train_batch_end(None, None, None, None, batch_idx)
    assert len(calls) == 4  # after steps 100 and 200


def _onednn_capacity_after_cli(env_value: str | None) -> str:
    code = ("import os; from crysfuse.cli import main; main(['models']); "
            "print('CAPACITY=' + os.environ.get('ONEDNN_PRIMITIVE_CACHE_CAPACITY', 'unset'))")
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    if env_value is not None:
        env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = env_value
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
    return out.stdout.rsplit("CAPACITY=", 1)[1].strip()


def test_the_cli_caps_onednns_primitive_cache_unless_the_user_set_it() -> None:
    """A bf16 run otherwise caches one oneDNN primitive per batch shape: the CLI caps the cache at start-up and
    leaves a capacity the user chose alone."""
    from crysfuse.allocator import ONEDNN_CACHE_CAPACITY

    assert _onednn_capacity_after_cli(None) == str(ONEDNN_CACHE_CAPACITY)
    assert _onednn_capacity_after_cli("512") == "512"
