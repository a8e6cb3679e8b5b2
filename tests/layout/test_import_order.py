"""Imports point one way: between the three layers and between pipeline's subpackages.

Each module may import only from its own room or from rooms listed before it. Lazy imports
inside functions count too: a cycle hidden in a function body is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Lowest first. A room is a top-level layer, or a subpackage / root module of pipeline/.
ROOMS = [
    "vae_core",
    "pipeline.errors",
    "pipeline.config",
    "pipeline.data",
    "pipeline.tracking",
    "pipeline.cluster",
    "pipeline.train",
    "pipeline.tune",
    "pipeline.inference",
    "pipeline.serving",
    "pipeline.demo",
    "jobs",
]


def room_of(module: str) -> str | None:
    for room in sorted(ROOMS, key=len, reverse=True):
        if module == room or module.startswith(room + "."):
            return room
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from pipeline import demo`` names a module: resolve it to its room.
            out += [f"{node.module}.{a.name}" for a in node.names]
    return out


def layer_files() -> list[Path]:
    """Every module of the three layers but pipeline/__init__.py (the namespace, empty)."""
    files = (p for top in ("vae_core", "pipeline", "jobs") for p in (REPO / top).rglob("*.py"))
    return sorted(p for p in files if p != REPO / "pipeline" / "__init__.py")


def test_every_module_belongs_to_a_room():
    homeless = [module_name(p) for p in layer_files() if room_of(module_name(p)) is None]
    assert homeless == [], f"add these to ROOMS (and docs/ARCHITECTURE.md): {homeless}"


def test_imports_point_one_way():
    upward = []
    for path in layer_files():
        here = room_of(module_name(path))
        for target in imported_modules(path):
            there = room_of(target)
            if there is not None and ROOMS.index(there) > ROOMS.index(here):
                upward.append(f"{module_name(path)} imports {target}")
    assert upward == []


def test_vae_core_stays_plain_pytorch():
    foreign = [
        f"{module_name(p)} imports {t}"
        for p in (REPO / "vae_core").rglob("*.py")
        for t in imported_modules(p)
        if t.split(".")[0] in {"ray", "mlflow", "pyarrow", "pipeline", "jobs"}
    ]
    assert foreign == []
