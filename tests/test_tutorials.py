"""Every tutorial under docs/tutorials runs top to bottom as a notebook (the slow suite).

The tutorials are MyST text notebooks; `make docs` executes them again and renders their outputs.
Here each one is read with jupytext and run cell by cell by nbclient in a kernel of this interpreter,
in a temporary folder, so that a failing cell fails the suite with its traceback.
"""

from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "docs" / "tutorials").glob("*.md"))


def test_every_tutorial_is_listed_in_the_docs_index():
    index = (Path(__file__).resolve().parents[1] / "docs" / "api" / "index.rst").read_text()
    assert TUTORIALS, "docs/tutorials holds no tutorial"
    for tutorial in TUTORIALS:
        assert f"tutorials/{tutorial.stem}" in index, f"{tutorial.name} is not in the docs' toctree"


@pytest.mark.slow
@pytest.mark.parametrize("tutorial", TUTORIALS, ids=[path.stem for path in TUTORIALS])
def test_the_tutorial_runs_top_to_bottom(tutorial, tmp_path):
    import jupytext
    from nbclient import NotebookClient

    notebook = jupytext.read(tutorial)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    client = NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells, f"{tutorial.name} has no code to run"
    errors = [out for cell in code_cells for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors
