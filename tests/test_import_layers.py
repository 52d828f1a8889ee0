"""Layering: replay/ is the bottom layer, monitor/ builds on it, trainer/ on top.

replay/ must import nothing from monitor or trainer, and monitor/ nothing from
trainer: neither at module level nor inside functions, neither absolutely nor
through relative imports, nor by name through importlib / __import__.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "replay": {"monitor", "trainer"},
    "monitor": {"trainer"},
}


def imported_modules(source: str, package_parts: list[str]) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``.

    ``package_parts`` is the package the module lives in (``["replay"]`` for
    ``replay/wire.py``), against which relative imports are resolved.
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                up = node.level - 1
                base = package_parts[: max(len(package_parts) - up, 0)]
            else:
                base = []
            if node.module:
                found.append((node.lineno, ".".join(base + [node.module])))
            else:  # from . import x / from .. import x: x may be a module
                found += [(node.lineno, ".".join(base + [a.name])) for a in node.names]
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append((node.lineno, arg.value))
    return found


def _package_parts(path: Path) -> list[str]:
    return list(path.relative_to(REPO).parent.parts)


def _files(package: str) -> list[Path]:
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"no Python files in {package}/"
    return files


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_layers(package):
    bad = []
    for path in _files(package):
        source = path.read_text(encoding="utf-8")
        for line, mod in imported_modules(source, _package_parts(path)):
            if mod.split(".")[0] in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(REPO)}:{line} imports {mod}")
    assert not bad, "layering violated:\n" + "\n".join(bad)


def test_monitor_does_build_on_replay():
    """Sanity check of the checker on the real tree: monitor imports replay."""
    mods = {
        m.split(".")[0]
        for path in _files("monitor")
        for _, m in imported_modules(path.read_text(encoding="utf-8"), _package_parts(path))
    }
    assert "replay" in mods


def test_checker_sees_every_import_form():
    src = (
        "import monitor.pipeline\n"
        "import numpy as np, trainer.ec57 as e\n"
        "from trainer import ec57\n"
        "from ..monitor import runner\n"
        "from .. import trainer\n"
        "from . import wire\n"
        "from .sub import thing\n"
        "def f():\n"
        "    import importlib\n"
        "    importlib.import_module('monitor.cli')\n"
        "    __import__('trainer')\n"
    )
    mods = [m for _, m in imported_modules(src, ["replay"])]
    assert sorted(mods) == sorted(
        ["monitor.pipeline", "numpy", "trainer.ec57", "trainer", "monitor", "trainer",
         "replay.wire", "replay.sub", "importlib", "monitor.cli", "trainer"]
    )
    # relative imports inside a subpackage resolve one level further down
    assert [m for _, m in imported_modules("from ..x import y\n", ["replay", "sub"])] == ["replay.x"]
