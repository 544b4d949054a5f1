"""The package layout rules of CONTRIBUTING.md, checked on the source (issue 10).

- argparse is imported only in `trl_seqpo/cli/` (and `trl_seqpo/integrations/`, where SimulEval's agent API hands
  us a parser);
- no library module imports the apps (`trl_seqpo.cli`, `trl_seqpo.demo`); the demo may import the library only;
- the pure text packages (`simt/`, `subtitles/`) and the shared bottom modules never import torch, TRL or transformers;
- no module grows past the size where it should be split.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "trl_seqpo"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES = 500
ARGPARSE_ALLOWED = ("cli", "integrations")
APPS = ("cli", "demo", "serve")
PURE = ("simt", "subtitles")
PURE_FILES = ("counts.py", "errors.py", "jsonl.py", "languages.py", "outputs.py", "secret.py")
HEAVY = ("torch", "trl", "transformers", "vllm", "comet")


def _top(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0]


def _imports(path: Path) -> list[str]:
    """Every module name imported anywhere in the file (top level, functions, TYPE_CHECKING blocks)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            # `from trl_seqpo import cli` imports the app package too
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _rel(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def test_the_package_has_the_method_folders():
    for folder in ("seqpo", "alpo", "simt", "subtitles", "rollout", "judge", "rewards", "evaluate", "synthetic"):
        assert (PACKAGE / folder / "__init__.py").is_file(), folder
    for folder in APPS:
        assert (PACKAGE / folder / "__init__.py").is_file(), folder


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_argparse_only_in_the_command_line(path):
    if _top(path) in ARGPARSE_ALLOWED:
        return
    assert "argparse" not in _imports(path), f"{_rel(path)} imports argparse: move its parser to trl_seqpo/cli/"


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_the_library_never_imports_the_apps(path):
    top = _top(path)
    for name in _imports(path):
        for app in APPS:
            if name == f"trl_seqpo.{app}" or name.startswith(f"trl_seqpo.{app}."):
                allowed = top == "cli" or (top in ("demo", "serve") and app == top)
                assert allowed, f"{_rel(path)} imports {name}: the library (and the demo) must not import {app}/"


@pytest.mark.parametrize("path", [p for p in MODULES if _top(p) in PURE or _top(p) in PURE_FILES], ids=_rel)
def test_pure_modules_import_no_deep_learning_framework(path):
    heavy = [n for n in _imports(path) if n.split(".")[0] in HEAVY]
    assert not heavy, f"{_rel(path)} imports {heavy}: simt/, subtitles/ and the shared modules stay framework-free"


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_no_module_is_too_large(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{_rel(path)} has {lines} lines (> {MAX_LINES}): split it by concern"


def test_the_checks_see_a_violation(tmp_path):
    """The import scanner finds imports inside functions and `from trl_seqpo import cli` (guards the guard)."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    import argparse\n    from trl_seqpo import cli\n")
    names = _imports(module)
    assert "argparse" in names and "trl_seqpo.cli" in names


# The direction data flows in (DESIGN.md, "Layout"): a package imports only from packages of a lower layer, so
# `rollout/` never reaches into `alpo/` (ALPO's sampler lives in alpo/) and `subtitles/` never into `evaluate/`.
LAYERS: dict[str, int] = {
    **{name: 0 for name in ("errors", "counts", "jsonl", "languages", "lazy", "outputs", "secret")},
    "model_card": 3,
    "simt": 1,
    "precision": 1,
    "subtitles": 1,
    "judge": 2,
    "rollout": 2,
    "rewards": 3,
    "seqpo": 4,
    "alpo": 4,
    "synthetic": 4,
    "evaluate": 5,
    "integrations": 6,
    "demo": 7,
    "recipes": 7,
    "serve": 7,
    "cli": 8,
    "__init__": 9,
}


def _package(path: Path) -> str:
    top = _top(path)
    return top.removesuffix(".py")


def test_every_package_has_a_layer():
    assert {_package(path) for path in MODULES} <= set(LAYERS), "add the new package to LAYERS"


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_packages_import_only_from_lower_layers(path):
    package = _package(path)
    for name in _imports(path):
        parts = name.split(".")
        if parts[0] != "trl_seqpo" or len(parts) < 2 or parts[1] == package or parts[1] not in LAYERS:
            continue
        # the shared bottom modules may use each other (jsonl raises errors' exceptions)
        assert LAYERS[parts[1]] < LAYERS[package] or LAYERS[package] == 0, (
            f"{_rel(path)} imports {name}: {package}/ (layer {LAYERS[package]}) must not import from "
            f"{parts[1]} (layer {LAYERS[parts[1]]}); move the code down or the import up"
        )
