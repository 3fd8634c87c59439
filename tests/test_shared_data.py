"""Real-data tests may skip on a developer's machine without ../shared/data, but never under CI."""

from __future__ import annotations

import pytest

from tests.conftest import require_shared


def test_missing_shared_data_fails_under_ci(monkeypatch, tmp_path):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_shared(tmp_path / "missing.json.gz")


def test_missing_shared_data_skips_outside_ci(monkeypatch, tmp_path):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_shared(tmp_path / "missing.json.gz")


def test_present_shared_data_is_returned(monkeypatch, tmp_path):
    monkeypatch.setenv("CI", "true")
    (tmp_path / "data.json").write_text("[]")
    assert require_shared(tmp_path / "data.json") == tmp_path / "data.json"
