"""Training: :func:`fit` runs ``pyro.infer.SVI`` on a :class:`~pyro_vae.VAE`.

The objective is the ELBO

.. math::

    \\mathcal{L}(x) = \\mathbb{E}_{q(z|x)}[\\log p(x|z)] - \\beta\\, \\mathrm{KL}(q(z|x)\\,\\|\\,p(z)),

with ``Trace_ELBO`` (a Monte Carlo KL) by default or ``TraceMeanField_ELBO`` (analytic KL where
one exists). ``beta`` ramps linearly from 0 to 1 over ``kl_warmup_epochs`` (KL warm-up,
Bowman et al. 2016; Sønderby et al. 2016), and is 1 afterwards.

Reproducibility: minibatch order and dynamic binarisation come from generators seeded by
``(seed, epoch)``, and Pyro's sampling uses a private copy of torch's global generator seeded by
``seed`` and saved in every checkpoint; so a run resumed from a checkpoint continues exactly as the
uninterrupted run would have.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyro
import torch
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from pyro.optim import PyroOptim

from . import checkpoint as ckpt
from ._checks import positive_int, positive_number
from ._io import FileLock, check_writable
from ._isolation import isolated
from .data import Split, binarize
from .initialization import initialize_from_data
from .model import VAE
from .objectives import ImportanceWeightedELBO
from .program import as_program
from .training_state import History, RunState, resume_state

ELBOS = {"trace": Trace_ELBO, "meanfield": TraceMeanField_ELBO, "iwae": ImportanceWeightedELBO}
def fit(
    vae: VAE,
    train: Any,
    *,
    covariates: Mapping[str, Any] | None = None,
    val: Any = None,
    val_covariates: Mapping[str, Any] | None = None,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    elbo: str = "trace",
    num_particles: int = 1,
    kl_warmup_epochs: float = 0.0,
    patience: int | None = None,
    restore_best: bool = True,
    seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    history_path: str | os.PathLike | None = None,
    progress: bool | str | None = None,
    before_training: Callable[[], None] | None = None,
    init_from_data: bool = True,
) -> History:
    """Train ``vae`` by stochastic variational inference (``pyro.infer.SVI``).

    Args:
        vae: the model to train, in place.
        train: training data ``(N, D)`` (tensor or array) or a :class:`~pyro_vae.data.Split`;
            a split with dynamic binarisation is binarised afresh every epoch.
        covariates: data-aligned keyword arguments of the training data (``{"y": Y}`` for a
            conditional VAE), sliced with every minibatch.
        val: optional validation data, evaluated every epoch by its average ELBO per point.
        val_covariates: the covariates of ``val``.
        epochs: total number of epochs (including those done before a resumed checkpoint).
        batch_size: minibatch size ``B``; the plate scales each minibatch by ``N / B``.
        lr: Adam learning rate.
        elbo: ``"trace"`` (``Trace_ELBO``), ``"meanfield"`` (``TraceMeanField_ELBO``) or ``"iwae"``
            (the per-point importance-weighted bound with ``num_particles`` samples,
            :class:`~pyro_vae.objectives.ImportanceWeightedELBO`).
        num_particles: samples of ``z`` per point and step (vectorised).
        kl_warmup_epochs: epochs over which the KL weight rises linearly from 0 to 1.
        patience: stop after this many epochs without a better validation ELBO (needs ``val``).
        restore_best: with ``val``, end with the parameters of the best validation epoch.
        seed: seeds shuffling, dynamic binarisation and sampling.
        checkpoint: file written atomically after every epoch (model, optimiser, RNG, history).
        resume: continue from ``checkpoint`` if it exists.
        history_path: ``.csv`` or ``.json`` file, rewritten after every epoch.
        progress: ``True`` shows a progress bar, ``"lines"`` prints one line per epoch to standard
            error, ``False`` neither; by default a bar when standard error is a terminal.
        init_from_data: start an untrained model where the training data put it
            (:meth:`VAE.initialize_from_data`); a model already trained or loaded, or resumed from
            a checkpoint, is never re-initialised. Pass ``False`` to keep weights you set yourself.
        before_training: called once every argument is checked and a resumed state loaded, just
            before the first epoch (the command line writes its run folder's description there,
            so a refused run leaves none behind).

    Returns: the :class:`History`.
    """
    _check_settings(epochs, batch_size, lr, elbo, num_particles, kl_warmup_epochs, patience, val, resume, checkpoint)
    x, dynamic = _training_tensor(vae, train)
    program = as_program(vae)
    train_covariates = program.data(x, covariates, checked=True).covariates
    x_val = val_data = None
    if val is not None:
        x_val = vae.check_data(val.x if isinstance(val, Split) else val, "val")
        val_data = program.data(x_val, val_covariates, what="val", checked=True)
    elif val_covariates is not None:
        raise ValueError("val_covariates were given without val data.")
    # Paths that would only fail after training are checked now.
    if checkpoint is not None:
        check_writable(Path(checkpoint).parent, "the checkpoint")
    if history_path is not None:
        if Path(history_path).suffix not in (".csv", ".json"):
            raise ValueError(f"History files end in .csv or .json, got {Path(history_path).name!r}.")
        check_writable(Path(history_path).parent, "the history")
    if progress not in (None, True, False, "lines"):
        raise ValueError(f"progress must be True, False, None or \"lines\", got {progress!r}.")
    lock = FileLock(f"{checkpoint}.lock", f"The checkpoint {checkpoint}") if checkpoint is not None else nullcontext()
    with lock:
        return _fit(vae, x, dynamic, train_covariates, x_val, val_data, epochs=epochs, batch_size=batch_size, lr=lr,
                    elbo=elbo, num_particles=num_particles, kl_warmup_epochs=kl_warmup_epochs, patience=patience,
                    restore_best=restore_best, seed=seed, checkpoint=checkpoint, resume=resume,
                    history_path=history_path, progress=progress, before_training=before_training,
                    init_from_data=init_from_data)  # fmt: skip


def _fit(vae, x, dynamic, train_covariates, x_val, val_data, *, epochs, batch_size, lr, elbo, num_particles,
         kl_warmup_epochs, patience, restore_best, seed, checkpoint, resume, history_path, progress,
         before_training, init_from_data) -> History:
    """The training loop of :func:`fit`, once its arguments are checked and the checkpoint locked."""
    settings = {
        "seed": seed, "batch_size": batch_size, "lr": lr, "elbo": elbo,
        "num_particles": num_particles, "kl_warmup_epochs": kl_warmup_epochs,
        "dynamic_binarization": dynamic, "num_data": len(x),
    }  # fmt: skip

    optimizer = JointAdam(vae, lr)
    state = RunState()
    if resume and Path(checkpoint).exists():
        state = resume_state(vae, optimizer, checkpoint, settings)
    elif init_from_data and not vae.trained:
        initialize_from_data(vae, binarize(x, _derived_seed(seed, 0, "binarize")) if dynamic else x, checked=True)

    if elbo == "iwae":
        loss = ImportanceWeightedELBO(num_particles, plate="data", max_plate_nesting=1)
    else:
        loss = ELBOS[elbo](num_particles=num_particles, vectorize_particles=num_particles > 1, max_plate_nesting=1)
    num_data = len(x)
    steps_per_epoch = math.ceil(num_data / batch_size)
    show = sys.stderr.isatty() if progress is None else progress is True
    lines = progress == "lines"
    if before_training is not None:
        before_training()
    # Validation reuses one program, its structure and the checked data, epoch after epoch.
    program = as_program(vae)
    val_sites = program.sites(val_data) if val_data is not None else None
    history = History(state.rows, state.best_epoch, False)

    from tqdm.auto import tqdm

    bar = tqdm(total=epochs, initial=state.epoch, disable=not show, unit="epoch", leave=False)
    # A private parameter store keeps two VAEs in one process from sharing parameters by name;
    # a private RNG keeps the caller's global random state untouched. Data was validated above,
    # so Pyro's per-step distribution checks are switched off for speed.
    with isolated(seed), pyro.validation_enabled(False):
        if state.rng_state is not None:
            torch.set_rng_state(state.rng_state)
        svi = _ModuleSVI(vae.model, vae.guide, optimizer, loss)
        vae.train()
        for epoch in range(state.epoch, epochs if not state.stopped_early else state.epoch):
            started = time.perf_counter()
            # What the model falls back to if this epoch diverges (a copy costs far less than an epoch).
            last_finite = copy.deepcopy(vae.state_dict())
            order = torch.randperm(num_data, generator=_generator(seed, epoch, "shuffle"))
            x_epoch = binarize(x, _derived_seed(seed, epoch, "binarize")) if dynamic else x
            total = 0.0
            for step in range(steps_per_epoch):
                indices = order[step * batch_size : (step + 1) * batch_size]
                weight = _kl_weight(epoch * steps_per_epoch + step, kl_warmup_epochs * steps_per_epoch)
                batch = {k: v[indices] for k, v in train_covariates.items()}
                step_loss = svi.step(x_epoch[indices], indices=indices, num_data=num_data, kl_weight=weight, **batch)
                if not math.isfinite(step_loss):
                    _diverged(vae, state, last_finite, epoch, step, f"the training loss became {step_loss}",
                              checkpoint, restore_best and x_val is not None)  # fmt: skip
                total += step_loss
            if not _all_finite(vae):
                _diverged(vae, state, last_finite, epoch, steps_per_epoch - 1,
                          "a parameter became non-finite (a non-finite gradient)", checkpoint,
                          restore_best and x_val is not None)  # fmt: skip
            row = {
                "epoch": epoch + 1,
                "kl_weight": weight,
                "train_elbo": -total / steps_per_epoch / num_data,
                "val_elbo": float("nan"),
                "seconds": 0.0,
            }
            if x_val is not None:
                row["val_elbo"] = _mean_elbo(program, val_data, val_sites, seed=seed, batch_size=max(batch_size, 512))
                if not math.isfinite(row["val_elbo"]):
                    _diverged(vae, state, last_finite, epoch, steps_per_epoch - 1,
                              f"the validation ELBO became {row['val_elbo']}", checkpoint, restore_best)  # fmt: skip
                if row["val_elbo"] > state.best_val:
                    state.best_val, state.best_epoch, state.bad_epochs = row["val_elbo"], epoch + 1, 0
                    state.best_state = copy.deepcopy(vae.state_dict())
                else:
                    state.bad_epochs += 1
            row["seconds"] = time.perf_counter() - started
            state.rows.append(row)
            state.epoch = epoch + 1
            history.best_epoch = state.best_epoch
            bar.update(1)
            bar.set_postfix(train=f"{row['train_elbo']:.2f}", val=f"{row['val_elbo']:.2f}")
            if lines:
                print(f"epoch {epoch + 1}/{epochs}: train {row['train_elbo']:.3f}, validation ELBO "
                      f"{row['val_elbo']:.3f} per point, {row['seconds']:.1f} s", file=sys.stderr, flush=True)  # fmt: skip
            if checkpoint is not None:
                state.rng_state = torch.get_rng_state()
                ckpt.save(vae, checkpoint, training=state.to_payload(optimizer, settings))
            if history_path is not None:
                history.save(history_path)
            if patience is not None and state.bad_epochs >= patience:
                state.stopped_early = True
                if checkpoint is not None:  # a resumed run then knows it is finished
                    ckpt.save(vae, checkpoint, training=state.to_payload(optimizer, settings))
                break
    history.stopped_early = state.stopped_early
    vae.trained = True
    if not history.stopped_early and history.still_rising:
        warnings.warn(
            f"The ELBO was still rising at the last epoch ({len(history.rows)}): the model has not converged. "
            "Train for more epochs (resume the checkpoint with a larger epochs) or raise lr.",
            RuntimeWarning, stacklevel=3,  # the caller of fit
        )  # fmt: skip
    bar.close()
    vae.eval()
    if x_val is not None and restore_best and state.best_state is not None:
        vae.load_state_dict(state.best_state)
    return history


@torch.no_grad()
def mean_elbo(
    model: Any,
    x: Any,
    *,
    guide: Any = None,
    covariates: Mapping[str, Any] | None = None,
    plate: str | None = None,
    global_values: Any = None,
    seed: int = 0,
    batch_size: int = 1024,
) -> float:
    """Average over points of a one-draw ELBO estimate, ``(1/N) sum_i [log p(x_i, z_i) - log q(z_i|x_i)]``.

    Works on any program (:mod:`pyro_vae.program`); every chunk passes its rows' positions to a
    model that declares ``indices``. Uses a private generator seeded by ``seed``, so repeated
    calls on the same model agree.
    """
    program = as_program(model, guide, plate=plate)
    data = program.data(x, covariates)
    sites = program.sites(data)
    program, _ = program.conditioned_on_globals(data, global_values)
    return _mean_elbo(program, data, sites, seed=seed, batch_size=batch_size)


@torch.no_grad()
def _mean_elbo(program, data, sites, *, seed: int, batch_size: int) -> float:
    """:func:`mean_elbo` on a prepared program and checked data (``fit`` validates every epoch)."""
    from .evaluate import _weights

    total = 0.0
    with isolated(seed), pyro.validation_enabled(False):
        for start in range(0, len(data), batch_size):
            rows = torch.arange(start, min(start + batch_size, len(data)))
            latent, observed = _weights(program, data.rows(rows), 1, sites, indices=rows, num_data=len(data))
            total += float((latent + sum(observed.values())).double().sum())
    return total / len(data)


class _ModuleSVI(SVI):
    """``SVI`` whose optimiser already owns every parameter (a :class:`JointAdam`).

    The first step is ``SVI.step`` itself, which records the parameters the model and guide
    touch so that :class:`JointAdam` can refuse strays. Later steps skip that bookkeeping (a
    parameter-only trace and fresh zero gradients per step), which only lazily created
    per-parameter optimisers need: the loss, its gradients and the update are unchanged.
    """

    def step(self, *args, **kwargs) -> float:
        if not self.optim._checked:
            return super().step(*args, **kwargs)
        loss = self.loss_and_grads(self.model, self.guide, *args, **kwargs)
        self.optim.optimizer.step()
        self.optim.optimizer.zero_grad(set_to_none=True)
        return loss


class JointAdam(PyroOptim):
    """One ``torch.optim.Adam`` over all parameters of a module, driven by ``SVI``.

    ``pyro.optim.Adam`` keeps a separate optimiser per parameter; a single one over the whole
    module does the same arithmetic with far fewer Python calls per step, and its state dict
    maps parameters by their fixed order in ``module.parameters()``, which makes it resumable.
    """

    def __init__(self, module: torch.nn.Module, lr: float):
        super().__init__(torch.optim.Adam, {"lr": lr})
        self.module = module
        self.params = list(module.parameters())
        self.optimizer = torch.optim.Adam(self.params, lr=lr, foreach=True)
        self._checked = False

    def __call__(self, params, *args, **kwargs) -> None:
        if not self._checked:
            known = {id(p) for p in self.params}
            stray = [p for p in params if id(p) not in known]
            if stray:
                raise ValueError(
                    f"The model or guide uses {len(stray)} parameter(s) outside the VAE module; "
                    "register every network and learned parameter as part of the VAE."
                )
            self._checked = True
        self.optimizer.step()

    def get_state(self) -> dict:
        return self.optimizer.state_dict()

    def set_state(self, state_dict: dict) -> None:
        self.optimizer.load_state_dict(state_dict)


# ---------------------------------------------------------------------- helpers
def _training_tensor(vae: VAE, train: Any) -> tuple[torch.Tensor, bool]:
    if isinstance(train, Split) and train.dynamic_binarization:
        if not bool(((train.x >= 0) & (train.x <= 1)).all()):
            raise ValueError("Dynamic binarisation needs training values in [0, 1] (Bernoulli probabilities).")
        # Any draw is binary; checking one draw checks shape, finiteness and support.
        vae.check_data(binarize(train.x, 0), "train (binarised)")
        return train.x, True
    return vae.check_data(train.x if isinstance(train, Split) else train, "train"), False


def _diverged(vae, state: RunState, last_finite: dict, epoch: int, step: int, what: str, checkpoint,
              use_best: bool) -> None:
    """Put finite parameters back in the model and raise a ``FloatingPointError`` that says which."""
    if use_best and state.best_state is not None:
        vae.load_state_dict(state.best_state)
        held = f"the parameters of its best validation epoch ({state.best_epoch})"
    else:
        vae.load_state_dict(last_finite)
        held = f"the parameters at the end of epoch {epoch}" if epoch else "its parameters from before the first epoch"
    saved = ""
    if checkpoint is not None:
        saved = (f" The checkpoint {checkpoint} holds epoch {state.epoch}, the last finished one."
                 if state.epoch else f" No checkpoint was written ({checkpoint} holds no epoch of this run).")
    raise FloatingPointError(
        f"Training stopped at step {step + 1} of epoch {epoch + 1}: {what}. The parameters left the range "
        f"where the model is finite. The model now holds {held}.{saved} Lower lr, or raise the floor of "
        "the likelihood's positive parameters (min_scale, min_concentration, ...)."
    )


def _all_finite(module: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


def _check_settings(epochs, batch_size, lr, elbo, num_particles, warmup, patience, val, resume, checkpoint):
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("num_particles", num_particles)):
        positive_int(value, name)
    positive_number(lr, "lr")
    if elbo not in ELBOS:
        raise ValueError(f"elbo must be one of {sorted(ELBOS)}, got {elbo!r}.")
    if not (isinstance(warmup, (int, float)) and not isinstance(warmup, bool) and math.isfinite(warmup) and warmup >= 0):
        raise ValueError(f"kl_warmup_epochs must be a finite number >= 0, got {warmup!r}.")
    if patience is not None and (val is None or isinstance(patience, bool) or not (isinstance(patience, int) and patience >= 1)):
        raise ValueError("Early stopping needs val data and a positive integer patience.")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=PATH.")


def _kl_weight(step: int, warmup_steps: float) -> float:
    return 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)


def _derived_seed(seed: int, epoch: int, purpose: str) -> int:
    offset = {"shuffle": 0, "binarize": 1}[purpose]
    return (int(seed) * 1_000_003 + epoch * 2 + offset) % (2**63)


def _generator(seed: int, epoch: int, purpose: str) -> torch.Generator:
    return torch.Generator().manual_seed(_derived_seed(seed, epoch, purpose))
