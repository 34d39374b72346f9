"""The package's layering, pinned: imports run one way, with no circles and no private names across
modules; functions keep to a length guide or say why not; ``import pyro_vae`` leaves the command
line alone; old module paths still import.

The layers, lowest first, are listed in docs/architecture.md; a module may import its own layer
and the layers below it. Imports under ``if TYPE_CHECKING:`` are annotations, not dependencies.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import pyro_vae

PACKAGE = Path(pyro_vae.__file__).parent
LAYERS = [
    "_util",
    "_version",
    "data",
    "program",
    "distributions",
    "likelihoods",
    "latent",
    "vae",
    "objectives",
    "evaluate",
    "diagnostics",
    "io",
    "train",
    "cli",
]
#: The length guide for a function's body (without its docstring), in lines.
MAX_FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _runtime_imports(path: Path):
    """``(target module, imported name)`` of every import outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for child in node.body
        for n in ast.walk(child)
    }
    module = _module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            if target.startswith("pyro_vae"):
                for alias in node.names:
                    candidate = f"{target}.{alias.name}"
                    yield (candidate, None) if candidate in MODULES else (target, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("pyro_vae"):
                    yield alias.name, None


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 else len(LAYERS)


GRAPH = {m: {t for t, _ in _runtime_imports(p) if t in MODULES and t != m} for m, p in MODULES.items()}


def test_every_subpackage_has_a_layer():
    assert {m.split(".")[1] for m in MODULES if m != "pyro_vae"} <= set(LAYERS)


def test_imports_run_one_way_down_the_layers():
    upward = [
        f"{m} imports {t}" for m, targets in GRAPH.items() if m != "pyro_vae" for t in targets if _layer(t) > _layer(m)
    ]
    assert upward == []


def test_there_are_no_import_circles():
    order, state = [], {}

    def visit(module, path):
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            if state.get(target) == "open":
                order.append(" -> ".join(path[path.index(target) :] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert order == []


def test_no_private_name_is_imported_from_another_module():
    private = [
        f"{m} imports {t}.{name}"
        for m, p in MODULES.items()
        for t, name in _runtime_imports(p)
        if name is not None and name.startswith("_") and name != "__version__"
    ]
    assert private == []


def _long_functions():
    """``module.function``: body length without the docstring, for functions over the guide's length
    whose docstring gives no ``Length:`` reason."""
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            doc = ast.get_docstring(node)
            doc_lines = node.body[0].end_lineno - node.body[0].lineno + 1 if doc is not None else 0
            length = node.end_lineno - node.lineno + 1 - doc_lines
            if length > MAX_FUNCTION_LINES and "Length:" not in (doc or ""):
                yield f"{module}.{node.name}", length


def test_no_function_is_longer_than_the_guide_without_a_reason():
    """Modules are shaped by concept, not by a line count; functions stay short enough to read in one
    screen, or say in their docstring (``Length: ...``) why they are not."""
    assert dict(_long_functions()) == {}


def test_the_length_guide_can_fail(tmp_path, monkeypatch):
    long_function = "def f():\n" + "    x = 1\n" * (MAX_FUNCTION_LINES + 1)
    (tmp_path / "long.py").write_text(long_function)
    monkeypatch.setattr(sys.modules[__name__], "MODULES", {"long": tmp_path / "long.py"})
    assert dict(_long_functions()) == {"long.f": MAX_FUNCTION_LINES + 2}


def test_importing_the_package_leaves_the_command_line_unloaded():
    code = "import sys, pyro_vae; print(sorted(m for m in sys.modules if m.startswith('pyro_vae.cli')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_importing_the_package_installs_no_import_machinery():
    code = (
        "import sys; before = [type(f).__name__ for f in sys.meta_path]; import pyro_vae; "
        "print(before == [type(f).__name__ for f in sys.meta_path], len(sys.path_hooks))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "True"
    for old in ("pyro_vae.checkpoint", "pyro_vae.training.objective", "pyro_vae.model"):
        with pytest.raises(ModuleNotFoundError):
            __import__(old)


def test_a_model_saved_under_an_old_module_path_still_loads(tmp_path):
    vae = pyro_vae.VAE(6, 2, hidden_sizes=(4,))
    config = vae.config()
    assert config["class"] == pyro_vae.vae.config.VAE_CLASS == "pyro_vae.vae.model.VAE"
    rebuilt = pyro_vae.VAE.from_config({**config, "class": "pyro_vae.model.VAE"})  # as files written before the move
    assert rebuilt.config() == config
    with pytest.raises(ValueError, match="saved from the class pyro_vae.model.Other"):
        pyro_vae.VAE.from_config({**config, "class": "pyro_vae.model.Other"})
