"""Old module paths that still import: each name maps to the module that now holds its code.

The package was regrouped by concept (``docs/architecture.md``). A script that imports an old path,
``import pyro_vae.ais`` or ``from pyro_vae.checkpoint import load``, gets the new module itself
(the same object, so attributes set on it reach the code that uses them), with no copy kept beside
it. :func:`install` puts the finder on ``sys.meta_path`` once, when ``pyro_vae`` is imported.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

#: Old dotted path -> the module that holds its code now.
MOVED: dict[str, str] = {
    "pyro_vae._checks": "pyro_vae._util.checks",
    "pyro_vae._registry": "pyro_vae._util.registry",
    "pyro_vae._io": "pyro_vae._util.files",
    "pyro_vae._safe_files": "pyro_vae._util.untrusted",
    "pyro_vae._memory": "pyro_vae._util.memory",
    "pyro_vae._isolation": "pyro_vae._util.isolation",
    "pyro_vae.readers": "pyro_vae.data.readers",
    "pyro_vae.rows": "pyro_vae.data.rows",
    "pyro_vae.sites": "pyro_vae.program.sites",
    "pyro_vae.mixtures": "pyro_vae.distributions.mixtures",
    "pyro_vae.latent_mixture": "pyro_vae.latent.mixture",
    "pyro_vae.predictive": "pyro_vae.latent.predictive",
    "pyro_vae.sampling": "pyro_vae.latent.sampling",
    "pyro_vae.model": "pyro_vae.vae.model",
    "pyro_vae.networks": "pyro_vae.vae.networks",
    "pyro_vae.priors": "pyro_vae.vae.priors",
    "pyro_vae.guides": "pyro_vae.vae.guides",
    "pyro_vae.initialization": "pyro_vae.vae.initialization",
    "pyro_vae.ais": "pyro_vae.evaluate.ais",
    "pyro_vae.estimates": "pyro_vae.evaluate.result",
    "pyro_vae.comparison": "pyro_vae.evaluate.ranking",
    "pyro_vae.baselines": "pyro_vae.evaluate.baselines",
    "pyro_vae.statistics": "pyro_vae.evaluate.statistics",
    "pyro_vae.amortization": "pyro_vae.diagnostics.amortization",
    "pyro_vae.quality": "pyro_vae.diagnostics.quality",
    "pyro_vae.copying": "pyro_vae.diagnostics.copying",
    "pyro_vae.plots": "pyro_vae.diagnostics.plots",
    "pyro_vae.checkpoint": "pyro_vae.io.checkpoint",
    "pyro_vae.export": "pyro_vae.io.export",
    "pyro_vae.cli.runs": "pyro_vae.io.runs",
    "pyro_vae.training_state": "pyro_vae.train.state",
    "pyro_vae.objectives": "pyro_vae.train.objectives",
    "pyro_vae.training": "pyro_vae.train",
    "pyro_vae.training.warmup": "pyro_vae.train.warmup",
    "pyro_vae.training.progress": "pyro_vae.train.progress",
    "pyro_vae.training.early_stopping": "pyro_vae.train.early_stopping",
    "pyro_vae.training.epochs": "pyro_vae.train.epochs",
    "pyro_vae.training.objective": "pyro_vae.train.objective",
    "pyro_vae.training.validation": "pyro_vae.train.validation",
    "pyro_vae.training.distributed": "pyro_vae.train.distributed",
}


def current_path(name: str) -> str:
    """The module path of ``name`` today: moved names map to their new home, others are returned as they are."""
    return MOVED.get(name, name)


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self.spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The target ran when it was imported; only its own spec, which the import system
        # replaced by the alias's, is put back.
        module.__spec__ = self.spec


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(
            fullname, _Alias(new), is_package=hasattr(importlib.import_module(new), "__path__")
        )


_FINDER = _MovedFinder()


def install() -> None:
    """Let the old paths import (idempotent)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
