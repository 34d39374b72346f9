"""One optimisation step of a Pyro objective, through Pyro's documented ``differentiable_loss``."""

from __future__ import annotations

from typing import Callable

import pyro
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from ..objectives import ImportanceWeightedELBO

#: Objective names accepted by :func:`make_objective` (and ``fit(elbo=...)``).
OBJECTIVES = ("trace", "meanfield", "iwae")


def make_objective(name: str, num_particles: int, *, plate: str = "data", max_plate_nesting: int = 1):
    """The Pyro objective called ``name``: ``Trace_ELBO``, ``TraceMeanField_ELBO`` or the per-point
    importance-weighted bound, with ``num_particles`` vectorised particles."""
    if name not in OBJECTIVES:
        raise ValueError(f"elbo must be one of {sorted(OBJECTIVES)}, got {name!r}.")
    if name == "iwae":
        return ImportanceWeightedELBO(num_particles, plate=plate, max_plate_nesting=max_plate_nesting)
    kind = Trace_ELBO if name == "trace" else TraceMeanField_ELBO
    return kind(num_particles=num_particles, vectorize_particles=num_particles > 1, max_plate_nesting=max_plate_nesting)


class ObjectiveStep:
    """``loss = objective.differentiable_loss(model, guide, ...)``, ``loss.backward()``, an Adam step.

    This is the pattern Pyro documents for training with a PyTorch optimiser. The optimiser is one
    ``torch.optim.Adam`` over ``module.parameters()``: its state dict maps parameters by their fixed
    order in the module, which makes it resumable. Every parameter the program uses must belong
    to ``module``; the first step checks Pyro's parameter store and refuses strays, which Adam
    would otherwise never update.

    Args:
        module: the ``nn.Module`` owning every parameter (a :class:`~pyro_vae.VAE`).
        model, guide: the Pyro program.
        objective: a Pyro ELBO (anything with ``differentiable_loss``), e.g. :func:`make_objective`.
        lr: Adam's learning rate.

    Inside a process group (``distributed=True``) the loss runs through
    ``torch.nn.parallel.DistributedDataParallel``, which averages the gradients over the ranks.
    """

    def __init__(self, module: torch.nn.Module, model: Callable, guide: Callable, objective, lr: float, *,
                 distributed: bool = False):  # fmt: skip
        self.module, self.model, self.guide, self.objective = module, model, guide, objective
        self.params = list(module.parameters())
        self.optimizer = torch.optim.Adam(self.params, lr=lr, foreach=True)
        self.loss = _Loss(module, model, guide, objective)
        if distributed:
            # Broadcasts rank 0's parameters now, and averages gradients in every backward pass.
            self.loss = torch.nn.parallel.DistributedDataParallel(self.loss)
        self._checked = False

    def __call__(self, *args, **kwargs) -> float:
        """One step on the minibatch ``model(*args, **kwargs)``; returns the loss (minus the objective)."""
        loss = self.loss(*args, **kwargs)
        loss.backward()
        if not self._checked:
            self._refuse_strays()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def _refuse_strays(self) -> None:
        known = {id(p) for p in self.params}
        store = pyro.get_param_store()
        stray = [name for name, value in store.named_parameters() if id(value) not in known]
        if stray:
            raise ValueError(
                f"The model or guide uses {len(stray)} parameter(s) outside the VAE module ({stray[:3]}); "
                "register every network and learned parameter as part of the VAE."
            )
        self._checked = True

    def state_dict(self) -> dict:
        """The optimiser's state (what a checkpoint stores)."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)


class _Loss(torch.nn.Module):
    """The objective as a module whose parameters are ``module``'s: what ``DistributedDataParallel`` wraps."""

    def __init__(self, module: torch.nn.Module, model: Callable, guide: Callable, objective):
        super().__init__()
        self.owner = module
        self.model, self.guide, self.objective = model, guide, objective

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.objective.differentiable_loss(self.model, self.guide, *args, **kwargs)
