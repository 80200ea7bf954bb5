"""The packages import one way: jobs, then pipelines (reporting, scoring, graph, extraction), then
classifiers and featurizers, then common; and no module reaches itself through its imports.

Read from the source (every import statement, those inside functions too), so nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("common", "featurizers", "classifiers", "pipelines", "jobs")
LAYERS = {"common": 0, "featurizers.runtimes": 1, "featurizers.decoding": 1, "featurizers.embedding": 2,
          "featurizers.detection": 2, "featurizers": 4, "featurizers.finetuning": 4, "classifiers": 4,
          "pipelines": 5, "pipelines.extraction": 5, "pipelines.graph": 6, "pipelines.scoring": 7,
          "pipelines.reporting": 8, "jobs": 9}
"""Higher imports lower. Equal layers may not import each other (classifiers and featurizers stay apart;
so do decoding and the runtimes, and detection and embedding, which both run networks on the runtimes)."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The project modules a file imports (``from a import b`` counts ``a.b`` when that is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in known)
    return found


def layer_of(module: str) -> tuple[str, int]:
    best = max((name for name in LAYERS if module == name or module.startswith(name + ".")), key=len)
    return best, LAYERS[best]


def test_the_layers_are_what_the_checker_expects():
    modules = project_modules()
    assert {"common.tables.schema", "pipelines.extraction.settings", "pipelines.graph.extraction_graph",
            "pipelines.scoring.scoring_run", "jobs.extract"} <= set(modules)
    assert layer_of("pipelines.graph.planning") == ("pipelines.graph", 6)
    assert layer_of("pipelines") == ("pipelines", 5)


def test_no_module_imports_from_a_package_above_it_or_beside_it():
    modules = project_modules()
    known = set(modules)
    wrong = []
    for module, path in modules.items():
        own, level = layer_of(module)
        for target in imported_modules(path, known):
            other, other_level = layer_of(target)
            if other != own and other_level >= level:
                wrong.append(f"{module} ({own}) imports {target} ({other})")
    assert not wrong, "\n".join(wrong)


def test_there_is_no_import_circle():
    modules = project_modules()
    known = set(modules)
    graph = {m: imported_modules(p, known) - {m} for m, p in modules.items()}
    # A package's __init__ is imported on the way to each of its modules; an edge to it alone is no circle.
    state: dict[str, int] = {}
    circles = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                circles.append(" -> ".join(trail[trail.index(target):] + [target]))
            elif target not in state:
                visit(target, trail + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, "\n".join(circles)
