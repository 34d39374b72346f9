"""Every experiment script runs: each declares a smoke command in its docstring (a line ending in
``# smoke run``), and this test runs it on tiny settings, with its outputs in a scratch folder.

The smoke commands read Fashion-MNIST (Debian's ``dataset-fashion-mnist``, which ``.ci/run``
installs); without it they are skipped with that reason. ``runs/smoke`` in a command is a one-epoch
run folder that the test trains first.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import pyro_vae

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.relative_to(REPO / "experiments") for p in (REPO / "experiments").rglob("*.py"))
SCRATCH = "/tmp/pyro_vae_smoke"
SMOKE = re.compile(r"^\s*python experiments/(\S+\.py)(.*?)\s+# smoke run$", re.M)

pytestmark = pytest.mark.slow


def smoke_command(script: Path) -> list[str]:
    found = SMOKE.findall((REPO / "experiments" / script).read_text())
    assert len(found) == 1, f"experiments/{script} declares {len(found)} smoke commands; it needs one"
    name, args = found[0]
    assert Path(name) == script, f"experiments/{script}'s smoke command runs {name}"
    return shlex.split(args)


def test_every_experiment_declares_one_smoke_command():
    assert len(SCRIPTS) >= 13
    for script in SCRIPTS:
        smoke_command(script)


@pytest.fixture(scope="module")
def fashion_mnist():
    try:
        pyro_vae.data.load("fashion-mnist", download=False)
    except (FileNotFoundError, ValueError) as error:
        pytest.skip(f"Fashion-MNIST is not installed ({str(error).splitlines()[0]})")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, fashion_mnist):
    run = tmp_path_factory.mktemp("runs") / "smoke"
    train = ["train", "--data", "fashion-mnist", "--binarize", "dynamic", "--latent-dim", "2", "--hidden", "16",
             "--epochs", "1", "--out", str(run)]  # fmt: skip
    subprocess.run([sys.executable, "-m", "pyro_vae.cli", *train], check=True, capture_output=True, timeout=300)
    return run


@pytest.mark.parametrize("script", [str(s) for s in SCRIPTS])
def test_the_smoke_command_runs(script, smoke_run, tmp_path):
    args = [
        a.replace(SCRATCH, str(tmp_path)).replace("runs/smoke", str(smoke_run)) for a in smoke_command(Path(script))
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, str(REPO / "experiments" / script), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"experiments/{script} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    assert not any(str(REPO / d) in done.stdout for d in ("docs/results", "docs/figures")), "wrote into docs/"
