"""The package's floors (docs/architecture.md): no module imports from a floor above its own.

Every module is parsed (ast, nothing imported), lazy imports inside functions included. A module may
import from its own floor and from any floor below; the floor table is written once, here.
"""
from __future__ import annotations

import ast
import pydoc
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "nnunet_sam_adapter"
# Folders installed as sub-packages (setup.cfg package_dir): nnUNet_extTrainer and the planner stay top-level.
SOURCES = {PACKAGE: ROOT / PACKAGE, f"{PACKAGE}.planners": ROOT / "planners", f"{PACKAGE}.trainers": ROOT / "trainers"}

# Lowest first; names are relative to the package, a folder covers every module in it (longest name wins).
FLOORS = [
    ("ground", ("", "atomic_io", "paths", "data.images")),
    ("data and model", ("data", "model", "network")),
    ("method registry and planning", ("methods", "planning", "planners")),
    ("training, evaluation, speed", ("training", "trainers", "evaluation", "inference", "speed")),
    ("reporting", ("reporting",)),
    ("benchmark orchestration", ("benchmark",)),
    ("applications and commands", ("apps", "cli")),
]


def package_modules(sources: dict[str, Path] = SOURCES) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package (packages by their __init__)."""
    modules = {}
    for prefix, folder in sources.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([prefix, *parts])] = path
    return modules


def floor_of(module: str) -> int | None:
    """Index in FLOORS of a module of the package (None: not covered by the table)."""
    relative = module[len(PACKAGE) + 1:] if module != PACKAGE else ""
    best, best_length = None, -1
    for index, (_, members) in enumerate(FLOORS):
        for member in members:
            covers = member == "" or relative == member or relative.startswith(member + ".")
            if covers and len(member) > best_length:
                best, best_length = index, len(member)
    return best


def imported_modules(module: str, path: Path, known: set[str]) -> list[tuple[int, str]]:
    """(line, module of the package) for every import statement in the file, at any depth."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append((node.lineno, candidate if candidate in known else base))
    return [(line, name) for line, name in found if name == PACKAGE or name.startswith(PACKAGE + ".")]


def upward_imports(sources: dict[str, Path] = SOURCES) -> list[str]:
    """'file:line: module (floor) imports target (higher floor)' for every import that runs up a floor."""
    modules = package_modules(sources)
    problems = []
    for module, path in modules.items():
        own = floor_of(module)
        for line, target in imported_modules(module, path, set(modules)):
            theirs = floor_of(target)
            if theirs is not None and own is not None and theirs > own:
                problems.append(f"{path.relative_to(ROOT) if ROOT in path.parents else path}:{line}: {module} "
                                f"({FLOORS[own][0]}) imports {target} ({FLOORS[theirs][0]})")
    return problems


def test_every_module_has_a_floor():
    unplaced = [module for module in package_modules() if floor_of(module) is None]
    assert not unplaced, f"add these to FLOORS: {unplaced}"


def test_no_import_runs_up_a_floor():
    problems = upward_imports()
    assert not problems, "imports from a higher floor:\n" + "\n".join(problems)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The check itself: a lazy import of the benchmark from evaluation/ (as postprocessing once had)."""
    package = tmp_path / PACKAGE
    (package / "evaluation").mkdir(parents=True)
    (package / "benchmark").mkdir()
    for init in (package, package / "evaluation", package / "benchmark"):
        (init / "__init__.py").write_text("")
    (package / "benchmark" / "layout.py").write_text("def nnunet_dirs(dataset):\n    pass\n")
    (package / "evaluation" / "postprocessing.py").write_text(
        "def f():\n    from nnunet_sam_adapter.benchmark.layout import nnunet_dirs\n")
    (package / "evaluation" / "folders.py").write_text("from ..benchmark import layout\n")
    problems = upward_imports({PACKAGE: package})
    assert len(problems) == 2 and all("(training, evaluation, speed) imports nnunet_sam_adapter.benchmark.layout "
                                      "(benchmark orchestration)" in p for p in problems), problems


def test_plans_written_before_the_stage_folders_still_resolve():
    """Plans on disk name the network by dotted path; the old one must keep resolving."""
    from nnunet_sam_adapter.model.network import SAMCrossModalNetwork

    assert pydoc.locate("nnunet_sam_adapter.network.SAMCrossModalNetwork") is SAMCrossModalNetwork


@pytest.mark.parametrize("module", ["nnunet_sam_adapter.paths", "nnunet_sam_adapter.atomic_io",
                                    "nnunet_sam_adapter.methods"])
def test_ground_helpers_and_registry_import_no_torch(module):
    code = f"import sys, {module}; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0, f"{module} imports torch"
