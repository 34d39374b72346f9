"""pyro_vae installs beside the stacks modellers already have: pip's resolver, in a dry run against
the package index (nothing is installed), on Python 3.12 with PyMC 6.4 and with scvi-tools 1.5.

Skipped, with the reason, where this machine has no Python 3.12; a resolver that cannot reach the
index is a skip too (this is a check of the published packages' metadata, not of the network).
"""

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def python_312() -> str | None:
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    for candidate in sorted(glob.glob(os.path.join(root, "versions", "3.12.*", "bin", "python"))):
        return candidate
    found = shutil.which("python3.12")
    if found and subprocess.run([found, "-c", "pass"], capture_output=True).returncode == 0:
        return found
    if sys.version_info[:2] == (3, 12):
        return sys.executable
    return None


def resolve(*requirements: str, tmp_path: Path) -> dict[str, str]:
    python = python_312()
    if python is None:
        pytest.skip("Python 3.12 is not installed here")
    report = tmp_path / "report.json"
    command = [python, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report",
               str(report), str(ROOT), *requirements]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    if done.returncode != 0 and any(s in output for s in ("NewConnectionError", "Network is unreachable")):
        pytest.skip("the package index cannot be reached from here")
    assert done.returncode == 0, output[-3000:]
    installed = json.loads(report.read_text())["install"]
    return {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"] for item in installed}


def test_beside_pymc_6(tmp_path):
    versions = resolve("pymc==6.4.0", tmp_path=tmp_path)
    assert versions["pymc"] == "6.4.0"
    assert versions["arviz"].startswith("1.")  # ArviZ 1.x on Python 3.12, as PyMC 6 needs
    assert "pyro-vae" in versions and versions["pyro-ppl"].startswith("1.9")


def test_beside_scvi_tools_1_5(tmp_path):
    versions = resolve("scvi-tools>=1.5,<1.6", tmp_path=tmp_path)
    assert versions["scvi-tools"].startswith("1.5")
    assert "pyro-vae" in versions and versions["arviz"].startswith("1.")
