"""One optimisation step of a Pyro objective, through Pyro's documented ``differentiable_loss``."""

from __future__ import annotations

from collections.abc import Callable

import pyro
import torch
from pyro.infer import JitTrace_ELBO, Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO

from ..vae.own_elbo import elbo_terms
from .objectives import ImportanceWeightedELBO

#: Objective names accepted by :func:`make_objective` (and ``fit(elbo=...)``).
OBJECTIVES = ("trace", "meanfield", "iwae", "iwae-dreg", "enum")
#: The objectives that sum discrete sites marked for enumeration (Pyro's ``TraceEnum_ELBO``).
ENUMERATING = ("enum",)
#: The objectives that maximise the K-sample importance-weighted ELBO rather than the ELBO.
IMPORTANCE_WEIGHTED = ("iwae", "iwae-dreg")


def make_objective(
    name: str, num_particles: int, *, plate: str = "data", max_plate_nesting: int = 1, jit: bool = False
):
    """The Pyro objective called ``name``: ``Trace_ELBO``, ``TraceMeanField_ELBO``, ``TraceEnum_ELBO``
    (``"enum"``, which sums the discrete sites marked for enumeration) or the per-point
    importance-weighted bound (``"iwae"``; ``"iwae-dreg"`` with doubly reparameterised gradients), with
    ``num_particles`` vectorised particles; with ``jit``, Pyro's
    compiled ``JitTrace_ELBO``.

    ``jit`` is refused for ``"meanfield"``: Pyro's ``JitTraceMeanField_ELBO`` (1.9) looks for its
    compiled function under a different attribute than the one it stores it in, so it compiles
    afresh at every step -- slower than the eager objective, and with different random draws.
    """
    if name not in OBJECTIVES:
        raise ValueError(f"elbo must be one of {sorted(OBJECTIVES)}, got {name!r}.")
    if jit and name != "trace":
        raise ValueError(f"jit=True compiles the 'trace' objective (JitTrace_ELBO); train elbo={name!r} without it.")
    if name in IMPORTANCE_WEIGHTED:
        return ImportanceWeightedELBO(
            num_particles, plate=plate, max_plate_nesting=max_plate_nesting, dreg=name == "iwae-dreg"
        )
    if name == "enum":
        return TraceEnum_ELBO(
            num_particles=num_particles, vectorize_particles=num_particles > 1, max_plate_nesting=max_plate_nesting
        )
    kind = JitTrace_ELBO if jit else Trace_ELBO if name == "trace" else TraceMeanField_ELBO
    options = {"ignore_jit_warnings": True} if jit else {}
    return kind(
        num_particles=num_particles,
        vectorize_particles=num_particles > 1,
        max_plate_nesting=max_plate_nesting,
        **options,
    )


class DirectTraceELBO:
    r"""Pyro's ``Trace_ELBO`` (or ``TraceMeanField_ELBO``) for a :class:`~pyro_vae.VAE`'s own model
    and guide, computed from the VAE's parts.

    Pyro's objectives run the guide and the model under effect handlers (a trace, a replay, the
    data plate's scaling) and sum the sites' log-densities. For a VAE that structure is known:
    :func:`~pyro_vae.vae.own_elbo.elbo_terms` makes the same draw of ``z`` and the same terms in plain
    PyTorch, and this sums them:

    .. math::

        \text{loss} = -\frac{s}{K} \sum_{k, b} \Big[ \log p(x_b \mid z_{kb}) + \beta\, r_{kb} \Big],
        \qquad s = N / B,

    with ``r = log p(z) - log q(z|x)`` at the draw (``Trace_ELBO``), or ``r = -KL(q || p)`` in
    closed form where there is one (``analytic_kl=True``, ``TraceMeanField_ELBO``); the minibatch
    of ``B`` of ``N`` points is scaled to the whole data set, ``beta`` is the KL weight. On one
    random stream the loss and its gradients equal Pyro's to rounding (tested for every prior,
    guide family and likelihood in ``tests/train/test_direct_elbo.py``); the step costs what a
    hand-written PyTorch loop costs (docs/benchmarks.md). :func:`pyro_vae.fit` uses it for the
    ``"trace"`` and ``"meanfield"`` objectives of a VAE with
    :attr:`~pyro_vae.VAE.computes_own_elbo`, unless ``direct=False``.
    """

    def __init__(self, vae, num_particles: int = 1, *, analytic_kl: bool = False):
        if not vae.computes_own_elbo:
            raise ValueError(
                f"{type(vae).__name__} rewrites its model or guide (or has a guide family of its own): "
                "its ELBO is computed by Pyro's objectives, not from its parts."
            )
        self.vae, self.num_particles, self.analytic_kl = vae, num_particles, analytic_kl

    def differentiable_loss(
        self,
        model: Callable,
        guide: Callable,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        size_factor: torch.Tensor | None = None,
        *,
        indices: torch.Tensor | None = None,
        num_data: int | None = None,
        kl_weight: float | torch.Tensor = 1.0,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Minus the ELBO estimate of the minibatch ``x`` (``(B, D)``), as Pyro's ``differentiable_loss``."""
        if model != self.vae.model or guide != self.vae.guide:
            raise ValueError("DirectTraceELBO computes the ELBO of its own VAE's model and guide only.")
        batch = x.shape[0]
        if indices is not None and len(indices) != batch:
            raise ValueError(f"indices holds {len(indices)} positions for a minibatch of {batch} points.")
        log_lik, log_ratio = elbo_terms(
            self.vae, x, y, size_factor, mask=mask, num_particles=self.num_particles, analytic_kl=self.analytic_kl
        )
        scale = (num_data if num_data is not None else batch) / batch  # what the data plate scales by
        if not (isinstance(kl_weight, float) and kl_weight == 1.0):
            log_ratio = log_ratio * kl_weight
        # One sum over points (and particles), scaled once: the value of Pyro's site-by-site sum up
        # to rounding, in fewer operations. A closed-form KL of shape (B,) counts once per particle.
        return (log_lik + log_ratio).sum() * (-scale / self.num_particles)


def training_objective(settings, *, vae=None, plate: str = "data", max_plate_nesting: int = 1):
    """The objective ``fit`` trains with ``settings`` (a :class:`~pyro_vae.train.settings.TrainSettings`):
    :class:`DirectTraceELBO` for the ``"trace"`` and ``"meanfield"`` objectives of a ``vae`` that computes its own ELBO
    (unless ``settings.direct`` is False or ``jit`` asks for Pyro's compiled one), else
    :func:`make_objective`'s Pyro ELBO. ``vae`` is None for a hand-written program."""
    if (
        settings.direct
        and settings.elbo in ("trace", "meanfield")
        and not settings.jit
        and vae is not None
        and vae.computes_own_elbo
    ):
        return DirectTraceELBO(vae, settings.num_particles, analytic_kl=settings.elbo == "meanfield")
    return make_objective(
        settings.elbo, settings.num_particles, plate=plate, max_plate_nesting=max_plate_nesting, jit=settings.jit
    )


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
