"""Locate the files shipped in ``assets/`` (model weights, model card, icons)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def assets_dir() -> Path:
    """Return the directory of the shipped assets.

    In an installed wheel the repository's ``assets/`` folder is the package
    ``monitor.assets``; in a source checkout (or an editable install) it is
    ``assets/`` beside ``monitor/``.
    """
    try:
        path = Path(str(resources.files("monitor.assets")))
        if path.is_dir():
            return path
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / "assets"


def asset(name: str) -> Path:
    """Return the path of one shipped asset (which may not exist)."""
    return assets_dir() / name
