"""Where a result came from: versions, code revision. Stored in every trial row."""

from __future__ import annotations

import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import gtaray


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return ""


def git_sha() -> str:
    """Commit of the gtaray checkout ("+dirty" if it has changes), "" outside a git checkout."""
    root = Path(gtaray.__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return sha + ("+dirty" if dirty else "")


def provenance() -> dict[str, str]:
    return {
        "gtaray_version": gtaray.__version__,
        "git_sha": git_sha(),
        "ray_version": _version("ray"),
        "torch_version": _version("torch"),
        "optuna_version": _version("optuna"),
    }
