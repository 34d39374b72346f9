"""The code of docs/programs.md runs as written (with a few epochs)."""

import re
from pathlib import Path

import matplotlib

DOC = Path(__file__).resolve().parents[1] / "docs" / "programs.md"


def test_the_worked_example_of_docs_programs_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    example = "\n".join(blocks[:2])  # the program and the tools; the protocol sketch is not code to run
    namespace = {"EPOCHS": 3}
    exec(compile(example, str(DOC), "exec"), namespace)
    assert namespace["sevens"].mean.shape == (16, 64)
    assert namespace["ll"].num_points == len(namespace["test_x"])
    assert "true labels" in capsys.readouterr().out
    matplotlib.use("Agg")


def test_the_semi_supervised_example_of_docs_programs_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    (example,) = [block for block in blocks if "obs_mask=known" in block]
    namespace = {"EPOCHS": 2}
    exec(compile(example, str(DOC), "exec"), namespace)
    assert namespace["ll"].num_points == len(namespace["data"].test.x)
    assert "accuracy of q(y|x)" in capsys.readouterr().out
