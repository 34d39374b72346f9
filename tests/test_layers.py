"""Structure rules: library calls keep the caller's matplotlib backend; modules never import the package;
files are written in one module."""

import ast
from pathlib import Path

import matplotlib
import torch

import pyro_vae

PACKAGE = Path(pyro_vae.__file__).parent


def test_figures_leave_the_callers_matplotlib_backend_alone(tmp_path):
    matplotlib.use("svg")  # any backend a notebook or script may have chosen
    try:
        x = (torch.rand(20, 6, generator=torch.Generator().manual_seed(0)) > 0.5).float()
        table = pyro_vae.compare(
            {"a": pyro_vae.VAE(6, 2, hidden_sizes=(4,)), "b": pyro_vae.VAE(6, 2, hidden_sizes=(8,))},
            x,
            num_particles=10,
        )
        pyro_vae.plot_comparison(table, tmp_path / "c.png")
        from pyro_vae.diagnostics import plots

        plots.image_grid(x, (2, 3), tmp_path / "g.png")
        assert matplotlib.get_backend().lower() == "svg"
        assert (tmp_path / "c.png").stat().st_size > 0 and (tmp_path / "g.png").stat().st_size > 0
    finally:
        matplotlib.use("Agg")


def test_no_module_imports_the_package_init():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__init__.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                top_level = node.module in (None, "pyro_vae") and node.level in (0, 1) and path.parent == PACKAGE
                if (node.module == "pyro_vae" and node.level == 0) or (
                    top_level
                    and node.level == 1
                    and node.module is None
                    and any(a.name == "__version__" for a in node.names)
                ):
                    offenders.append(f"{path.name}: from {'.' * node.level}{node.module or ''} import ...")
    assert offenders == []


def test_file_writing_lives_in_one_module_and_run_folders_in_the_command_line():
    writers = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if "tempfile" in p.read_text()]
    assert writers == [str(Path("_util", "files.py"))]
    # Run folders are read and written by pyro_vae.io.runs, which the command line uses; the
    # package itself never imports the command line (test_layout.py).
    assert pyro_vae.load_run.__module__ == "pyro_vae.io.runs"
    assert not hasattr(pyro_vae.io.checkpoint, "load_run")
