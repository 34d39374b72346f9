"""One optimisation step of a Pyro objective, through Pyro's documented ``differentiable_loss``:
``torch.optim.Adam`` (fused where it can be), data-parallel gradient averaging and the compiled
(``jit``) objective's plumbing. The objectives themselves are in :mod:`pyro_vae.objectives`."""

from __future__ import annotations

from collections.abc import Callable

import pyro
import torch
from pyro.infer import JitTrace_ELBO


def adam(params: list[torch.Tensor], lr: float) -> torch.optim.Adam:
    """``torch.optim.Adam`` over ``params``, with PyTorch's fused kernel where the parameters allow it.

    The fused kernel updates every parameter in one pass; on the reference CPU VAE it takes about
    0.6 ms less per step than the multi-tensor (``foreach``) kernel (docs/benchmarks.md). Both
    compute the same Adam update, up to floating-point rounding. Parameters of a device or dtype
    without fused support use ``foreach``. A checkpoint keeps the kernel it was trained with.
    """
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        devices = set(_get_fused_kernels_supported_devices())
    except ImportError:  # an older PyTorch: no fused kernel to rely on
        devices = set()
    if params and all(p.is_floating_point() and p.device.type in devices for p in params):
        return torch.optim.Adam(params, lr=lr, fused=True)
    return torch.optim.Adam(params, lr=lr, foreach=True)


class ObjectiveStep:
    """``loss = objective.differentiable_loss(model, guide, ...)``, ``loss.backward()``, an Adam step.

    This is the pattern Pyro documents for training with a PyTorch optimiser. The optimiser is one
    ``torch.optim.Adam`` over ``module.parameters()`` (fused where possible, :func:`adam`): its state
    dict maps parameters by their fixed order in the module, which makes it resumable. Every
    parameter the program uses must belong to ``module``; the first step checks Pyro's parameter
    store and refuses strays, which Adam would otherwise never update.

    Args:
        module: the ``nn.Module`` owning every parameter (a :class:`~pyro_vae.VAE`).
        model, guide: the Pyro program.
        objective: a Pyro ELBO (anything with ``differentiable_loss``), e.g. :func:`make_objective`.
        lr: Adam's learning rate.

    Inside a process group (``distributed=True``) the loss runs through
    ``torch.nn.parallel.DistributedDataParallel``, which averages the gradients over the ranks.

    A compiled objective (``make_objective(..., jit=True)``) traces the program once per minibatch
    size. Pyro compiles anew for every distinct keyword argument, so the step passes every tensor
    (``indices``, the KL weight, covariates) positionally and only fixed values (``num_data``, the
    batch size) by keyword; :meth:`compile` traces a batch size ahead of time without touching the
    random stream, so a resumed run draws exactly what the uninterrupted run drew.
    """

    def __init__(
        self,
        module: torch.nn.Module | list[torch.Tensor],
        model: Callable,
        guide: Callable,
        objective,
        lr: float,
        *,
        distributed: bool = False,
    ):
        self.model, self.guide, self.objective = model, guide, objective
        # A module owns every parameter (a VAE); a list is a program's parameter-store tensors.
        self.module = module if isinstance(module, torch.nn.Module) else None
        self.params = list(self.module.parameters()) if self.module is not None else list(module)
        self.optimizer = adam(self.params, lr)
        self.loss = _Loss(self.module, model, guide, objective)
        self._average = False
        if distributed and self.module is not None:
            # Broadcasts rank 0's parameters now, and averages gradients in every backward pass.
            self.loss = torch.nn.parallel.DistributedDataParallel(self.loss)
        elif distributed:  # what DistributedDataParallel does, for tensors no module owns
            import torch.distributed as dist

            with torch.no_grad():
                for param in self.params:
                    dist.broadcast(param, src=0)
            self._average = True
        self._known = {name for name, _ in pyro.get_param_store().named_parameters()}
        self._checked = False

    def __call__(self, *args, **kwargs) -> float:
        """One step on the minibatch ``model(*args, **kwargs)``; returns the loss (minus the objective)."""
        loss = self.loss(*args, **kwargs)
        loss.backward()
        if self._average:
            _average_gradients(self.params)
        if not self._checked:
            self._refuse_strays()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def compile(self, *args, **kwargs) -> None:
        """Trace the compiled objective for this minibatch's shapes, leaving the random stream as it was."""
        if isinstance(self.objective, JitTrace_ELBO):
            with torch.random.fork_rng(devices=[]):
                self.loss(*args, **kwargs)

    def _refuse_strays(self) -> None:
        store = pyro.get_param_store()
        if self.module is not None:
            known = {id(p) for p in self.params}
            stray = [name for name, value in store.named_parameters() if id(value) not in known]
            if stray:
                raise ValueError(
                    f"The model or guide uses {len(stray)} parameter(s) outside the VAE module ({stray[:3]}); "
                    "register every network and learned parameter as part of the VAE."
                )
        else:
            new = sorted({name for name, _ in store.named_parameters()} - self._known)
            if new:
                raise ValueError(
                    f"The program registered parameter(s) {new[:3]} during training that its first run did not; "
                    "register every pyro.param and pyro.module on every call, so that each is trained."
                )
        self._checked = True

    def state_dict(self) -> dict:
        """The optimiser's state (what a checkpoint stores)."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)


def _average_gradients(params: list[torch.Tensor]) -> None:
    import torch.distributed as dist

    world = dist.get_world_size()
    for param in params:
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
        param.grad.div_(world)


class _Loss(torch.nn.Module):
    """The objective as a module whose parameters are ``module``'s: what ``DistributedDataParallel`` wraps."""

    def __init__(self, module: torch.nn.Module | None, model: Callable, guide: Callable, objective):
        super().__init__()
        self.owner = module
        self.model, self.guide, self.objective = model, guide, objective

        self.jit = isinstance(objective, JitTrace_ELBO)
        self.positional_model, self.positional_guide = _positional(model), _positional(guide)

    def forward(self, *args, **kwargs) -> torch.Tensor:
        if not self.jit:
            return self.objective.differentiable_loss(self.model, self.guide, *args, **kwargs)
        # Tensors go positionally (inputs of the compiled graph); fixed values by keyword (compile keys).
        fixed = {k: kwargs.pop(k) for k in [k for k, v in kwargs.items() if k == "num_data" or v is None]}
        names = tuple(sorted(kwargs))
        tensors = [
            torch.as_tensor(kwargs[k], dtype=torch.get_default_dtype() if k == "kl_weight" else None) for k in names
        ]
        return self.objective.differentiable_loss(
            self.positional_model,
            self.positional_guide,
            *args,
            *tensors,
            tensor_names=names,
            rows=len(args[0]),
            **fixed,
        )


def _positional(fn: Callable) -> Callable:
    """``fn`` called as ``fn(x, *tensors, tensor_names=..., rows=..., **fixed)``: the calling form of a
    compiled objective, turned back into ``fn(x, **dict(zip(tensor_names, tensors)), **fixed)``.

    ``rows`` (the minibatch size) is not passed on: keyword arguments are the keys under which
    ``JitTrace_ELBO`` keeps its traces, so it gives one trace per minibatch size."""

    def call(x, *tensors, tensor_names, rows, **fixed):
        return fn(x, **dict(zip(tensor_names, tensors)), **fixed)

    setattr(call, "__wrapped_program__", getattr(fn, "__wrapped_program__", fn))
    return call
