"""The product type-checks (mypy, configured in pyproject.toml) and the tree is ruff clean, in every CI run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_mypy_finds_no_type_errors() -> None:
    from mypy import api

    limit = sys.getrecursionlimit()
    try:
        stdout, stderr, status = api.run(["--config-file", str(ROOT / "pyproject.toml"), "--no-error-summary"])
    finally:  # mypy raises the limit for the whole process; later tests rely on the default (deep JSON)
        sys.setrecursionlimit(limit)
    assert status == 0, stdout + stderr


def test_ruff_finds_nothing() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    result = subprocess.run([ruff, "check", "--no-cache", str(ROOT)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
