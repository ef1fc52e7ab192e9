"""The layout shows the design: imports run one way (cli -> gateway -> actors -> nodes, storage -> engine),
the job loop is free of Ray, and only actors/ray_runtime/ray_api.py imports ray."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

MAY_IMPORT = {
    "engine": set(),
    "storage": {"engine"},
    "config": {"engine", "nodes"},
    "nodes": {"engine", "config"},
    "actors.job_loop": {"engine", "nodes", "storage"},
    "actors.ray_runtime": {"engine", "nodes", "storage", "config", "actors.job_loop"},
    "gateway": {"engine", "nodes", "storage", "config", "actors.ray_runtime"},
    "cli": {"engine", "nodes", "storage", "config", "actors.ray_runtime", "gateway"},
}
"""Each layer (a package, or a sub-package of actors/) and the other layers it may import."""

RAY_WRAPPER = "actors/ray_runtime/ray_api.py"


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    name = ".".join(parts[:2]) if parts[0] == "actors" else parts[0]
    return name if name in MAY_IMPORT else None


def imports_of(path: Path) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
            if node.module == "actors":
                found.extend(f"actors.{alias.name}" for alias in node.names)
    return found


def modules_of(layer: str) -> list[Path]:
    return sorted((ROOT / layer.replace(".", "/")).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(MAY_IMPORT))
def test_a_layer_imports_only_the_layers_below_it(layer):
    wrong = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in modules_of(layer)
        for module in imports_of(path)
        if (target := layer_of(module)) not in (None, layer) and target not in MAY_IMPORT[layer]
    }
    assert not wrong, f"{layer} may import only {sorted(MAY_IMPORT[layer])}"


def test_nothing_below_the_job_loop_imports_ray():
    with_ray = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in modules_of("actors.job_loop")
        for module in imports_of(path)
        if module.split(".")[0] == "ray"
    }
    assert not with_ray


def test_only_the_ray_wrapper_module_imports_ray():
    with_ray = {
        str(path.relative_to(ROOT))
        for layer in MAY_IMPORT
        for path in modules_of(layer)
        if any(module.split(".")[0] == "ray" for module in imports_of(path))
    }
    assert with_ray == {RAY_WRAPPER}
