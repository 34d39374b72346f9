"""One row of docs/tested-with.md: this interpreter and the versions of what the suite ran on.

Run by .ci/run after each interpreter's suite has passed; never edited by hand.
"""

import importlib.metadata
import platform

PACKAGES = ("torch", "pyro-ppl", "arviz", "numpy", "pandas", "xarray", "scikit-learn", "matplotlib")


def version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def build() -> str:
    import torch

    return f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"


cells = [platform.python_version(), *(version(name) for name in PACKAGES), build()]
print("| " + " | ".join(cells) + " |")
