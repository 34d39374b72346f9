"""Training: :func:`fit` minimises a Pyro objective of a :class:`~pyro_vae.VAE` or any Pyro program with Adam.

Each step is Pyro's documented pattern for PyTorch optimisers: ``loss = elbo.differentiable_loss(
model, guide, ...)``, ``loss.backward()``, ``torch.optim.Adam.step()``
(:class:`~pyro_vae.train.ObjectiveStep`). The loop below composes the pieces of
:mod:`pyro_vae.train` -- KL warm-up, epoch order and binarisation, validation, early stopping,
progress -- with checkpoints and divergence handling.

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

import dataclasses
import math
import os
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pyro
import torch

from .._util.files import FileLock, check_free_space, check_writable
from .._util.isolation import isolated
from .._util.memory import release_freed_memory
from .._util.user_warnings import warn_user
from ..data.loading import Split
from ..data.rows import CHUNK_BYTES, RowSource
from ..objectives import ENUMERATING, IMPORTANCE_WEIGHTED, OBJECTIVES, training_objective
from ..program.binding import bind
from ..program.protocol import Data, as_program
from ..program.support import check_support
from ..vae.model import VAE
from .distributed import Distributed
from .early_stopping import EarlyStopping
from .epochs import epoch_order, epoch_values, first_rows, first_rows_of, training_data
from .progress import Progress
from .settings import TrainSettings, masked_defaults, settings_from, with_training_options
from .state import History, RunState, resume_state
from .step import ObjectiveStep
from .trainee import ModuleTrainee, ProgramTrainee, Trainee
from .validation import Validation
from .warmup import KLWarmup

#: Names of the objectives ``fit(elbo=...)`` accepts.
ELBOS = OBJECTIVES
#: The keyword options of :func:`fit`: the fields of :class:`TrainSettings`.
TRAIN_OPTIONS = frozenset(f.name for f in dataclasses.fields(TrainSettings))
#: Rows sampled from data on disk to start an untrained model (``init_from_data``), at most
#: :data:`pyro_vae.data.rows.CHUNK_BYTES` of them.
INIT_SAMPLE_ROWS = 10_000


@with_training_options
def fit(
    model: Any,
    train: Any,
    *,
    guide: Callable | None = None,
    plate: str | None = None,
    covariates: Mapping[str, Any] | None = None,
    mask: Any = None,
    val: Any = None,
    val_covariates: Mapping[str, Any] | None = None,
    val_mask: Any = None,
    settings: TrainSettings | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    history_path: str | os.PathLike | None = None,
    before_training: Callable[[], None] | None = None,
    **options: Any,
) -> History:
    """Train a :class:`~pyro_vae.VAE`, or any Pyro program, by stochastic variational inference:
    Pyro's ``differentiable_loss`` of the objective, minimised with ``torch.optim.Adam``.

    Args:
        model: the model to train, in place: a ``VAE``, or a Pyro program ``model(x, **covariates)``
            (:mod:`pyro_vae.program`) with ``guide=``. A program's parameters are the ``pyro.param``
            and ``pyro.module`` sites it registers in Pyro's parameter store, trained there as
            ``pyro.infer.SVI`` would (see :mod:`pyro_vae.train.trainee` for the scaling of its
            data plate to ``N`` and the KL weight of warm-up).
        train: training data ``(N, D)`` (tensor or array) or a :class:`~pyro_vae.data.Split`;
            a split with dynamic binarisation is binarised afresh every epoch, and one with
            ``covariates`` passes them as ``y`` (``covariates=`` overrides). Data larger than
            memory stays on disk: pass a numpy memory map or a :class:`~pyro_vae.data.RowSource`
            (:func:`pyro_vae.data.open_rows`), and each minibatch is read as it is needed.
        guide: a program's guide ``guide(x, **covariates)`` (a VAE brings its own).
        plate: the name of a program's data plate (``"data"`` by default).
        covariates: data-aligned keyword arguments of the training data (``{"y": Y}`` for a
            conditional VAE), sliced with every minibatch.
        mask, val_mask: True where ``train`` (``val``) was observed, same shape, NaN allowed
            elsewhere: only observed entries are scored (:mod:`pyro_vae.program.missing`; a VAE's
            encoder also sees the mask when built with ``missing=True``). A VAE given a mask and
            neither ``elbo`` nor ``num_particles`` maximises the importance-weighted bound with
            :data:`~pyro_vae.train.settings.MASKED_PARTICLES` samples (``docs/missing-data.md`` says why). Splits read with
            missing entries (``pyro_vae.data.load(..., missing=True)``) bring their own masks.
        val: optional validation data, evaluated every epoch by its average ELBO per point; with
            ``elbo="iwae"`` or ``"iwae-dreg"``, by the same ``num_particles``-sample
            importance-weighted ELBO that training maximises (so early stopping follows it).
            Discrete sites marked for enumeration are summed there as in training.
        val_covariates: the covariates of ``val``.
        settings: a :class:`~pyro_vae.train.settings.TrainSettings`; ``options`` change single fields of it.
        checkpoint: file written atomically after every epoch (parameters, optimiser, RNG, history).
        resume: continue from ``checkpoint`` if it exists. A program is rebuilt first and passed
            again; the checkpoint's values replace its parameters.
        history_path: ``.csv`` or ``.json`` file, rewritten after every epoch.
        before_training: called once every argument is checked and a resumed state loaded, just
            before the first epoch (the command line writes its run folder's description there,
            so a refused run leaves none behind).
        **options: any field of :class:`~pyro_vae.train.settings.TrainSettings`, listed with
            their defaults under "Training options" below: ``epochs=10``, ``batch_size=128``, ``lr=1e-3``, ``elbo="trace"``
            (or ``"meanfield"``, ``"iwae"``, ``"iwae-dreg"``, ``"enum"``), ``num_particles=1``,
            ``kl_warmup_epochs=0.0``, ``patience=None``, ``restore_best=True``, ``seed=0``,
            ``init_from_data=True``, ``jit=False``, ``progress=None``; ``elbo`` also takes a
            Pyro ``Trace_ELBO``, ``JitTrace_ELBO``, ``TraceMeanField_ELBO`` or ``TraceEnum_ELBO``.
            A program whose sites are marked for enumeration trains on ``TraceEnum_ELBO``
            (``"enum"``) when ``"trace"`` is asked.

    Returns: the :class:`~pyro_vae.train.state.History`.

    Length: checks every argument and reads every form of data (tensors, splits, files, masks, covariates)
    before the checkpoint is locked and the first step runs.
    """
    unknown = sorted(set(options) - TRAIN_OPTIONS)
    if unknown:
        raise TypeError(f"fit() got unknown options {unknown}; the training options are {sorted(TRAIN_OPTIONS)}.")
    # Splits of a table read with missing entries bring their masks unless others are given.
    mask = train.mask if mask is None and isinstance(train, Split) else mask
    val_mask = val.mask if val_mask is None and isinstance(val, Split) else val_mask
    if isinstance(model, VAE) and mask is not None and settings is None:
        options = {**masked_defaults(options), **options}
    settings = settings_from(settings, options)
    if settings.patience is not None and val is None:
        raise ValueError("Early stopping needs val data and a positive integer patience.")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=PATH.")
    if settings.jit and Distributed.current().active:
        raise ValueError("jit=True is not available inside a process group; train with jit=False there.")
    if isinstance(model, VAE) and (guide is not None or plate is not None):
        raise ValueError("A VAE brings its own guide and data plate; pass guide= and plate= only with a program.")
    program = as_program(model, guide, plate=plate)
    if not settings.direct:  # validation (and the program fit returns to) trace Pyro's programs too
        program = program.replace(direct_weights=None)
    # A split of a table read with covariate columns brings them (as y) unless others are given.
    covariates = train.covariates_for() if covariates is None and isinstance(train, Split) else covariates
    val_covariates = val.covariates_for() if val_covariates is None and isinstance(val, Split) else val_covariates
    x, dynamic, train_covariates = training_data(program, train, covariates, mask)
    x_val = val_data = None
    if val is not None:
        val_data = program.data(val.x if isinstance(val, Split) else val, val_covariates, what="val", mask=val_mask)
        x_val = val_data.x
    elif val_covariates is not None or val_mask is not None:
        raise ValueError("val_covariates or val_mask were given without val data.")
    trainee: Trainee
    first = first_rows_of(train_covariates)
    mask = first.pop("mask", None)  # checked and filled with the training data already
    sample = dataclasses.replace(
        program.data(first_rows(x, dynamic, seed=settings.seed), first, checked=True), mask=mask
    )
    if isinstance(model, VAE):
        trainee = ModuleTrainee(model, settings.init_from_data, first_rows=sample)
    else:
        # Training draws the global latents with the rest; validation and K > 1 run particles at once.
        vectorised = val is not None or settings.num_particles > 1
        sites = bind(program, sample.x, covariates=sample.covariates, draw_globals=True, particles=vectorised).sites
        if sites.globals and val is not None:
            raise ValueError(
                f"The program has global latent site(s) {list(sites.globals)}: a per-point validation ELBO "
                "exists only given their values. Train without val= (and patience), or fix them with "
                "poutine.condition."
            )
        if not dynamic:  # dynamically binarised data are in a Bernoulli's support at every epoch
            values = dict(train_covariates or {})
            check_support(program, Data(x, values, values.pop("mask", None)), sites)
        settings = _objective_for(settings, sites)
        trainee = ProgramTrainee(program, sample, len(x), max_plate_nesting=sites.nesting)
    # Paths that would only fail after training are checked now.
    if checkpoint is not None:
        check_writable(Path(checkpoint).parent, "the checkpoint")
        # Parameters, Adam's two moments and the best state, written beside the previous checkpoint.
        size = sum(p.numel() * p.element_size() for p in trainee.parameters)
        check_free_space(Path(checkpoint).parent, 2 * 4 * size + 2**20, "Training with a checkpoint")
    if history_path is not None:
        if Path(history_path).suffix not in (".csv", ".json"):
            raise ValueError(f"History files end in .csv or .json, got {Path(history_path).name!r}.")
        check_writable(Path(history_path).parent, "the history")
    # In a process group only rank 0 writes the checkpoint, so only it holds the lock.
    writes = checkpoint is not None and Distributed.current().is_main
    lock = FileLock(f"{checkpoint}.lock", f"The checkpoint {checkpoint}") if writes else nullcontext()
    with lock:
        return _fit(
            trainee,
            program,
            x,
            dynamic,
            train_covariates,
            x_val,
            val_data,
            settings,
            checkpoint=checkpoint,
            resume=resume,
            history_path=history_path,
            before_training=before_training,
        )


def _objective_for(settings: TrainSettings, sites) -> TrainSettings:
    """The settings for a program: ``TraceEnum_ELBO`` where its sites are marked for enumeration."""
    if not sites.enumerated:
        if settings.elbo in ENUMERATING:
            raise ValueError("elbo='enum' sums sites marked for enumeration, and this program marks none.")
        return settings
    if settings.elbo == "trace" and not settings.jit:
        return settings.replace(elbo="enum")
    if settings.elbo not in ENUMERATING:
        raise ValueError(
            f"The program marks {list(sites.enumerated)} for enumeration; train it with elbo='enum' "
            f"(TraceEnum_ELBO, without jit), not elbo={settings.elbo!r}."
        )
    return settings


def _fit(
    trainee: Trainee,
    program,
    x,
    dynamic,
    train_covariates,
    x_val,
    val_data,
    settings: TrainSettings,
    *,
    checkpoint,
    resume,
    history_path,
    before_training,
) -> History:
    """The training loop of :func:`fit`, once its arguments are checked and the checkpoint locked:
    the objective and its step, the start (a checkpoint or the data), then :class:`_Epochs` epoch by
    epoch inside the private parameter store and random stream."""
    record = settings.resume_record(dynamic_binarization=dynamic, num_data=len(x))
    group = Distributed.current()
    step = _objective_step(trainee, program, settings, group)
    state = RunState(stopping=EarlyStopping(settings.patience))
    if resume and Path(checkpoint).exists():
        state = resume_state(trainee, step, checkpoint, record, settings.patience)
    elif trainee.needs_start:
        _start_from_data(trainee, x, dynamic, settings.seed, train_covariates)
    epochs = _Epochs(trainee, step, state, settings, x, dynamic, train_covariates, group, has_val=x_val is not None)
    if before_training is not None and group.is_main:
        before_training()
    validation = _validation(program, val_data, settings, group) if x_val is not None else None
    history = History(state.rows, state.stopping.best_epoch, False)
    shown = Progress(settings.progress if group.is_main else False, settings.epochs, state.epoch)

    # A private parameter store (for a VAE, empty: two VAEs in one process never share parameters
    # by name; for a program, the caller's parameters themselves) and a private RNG keep the
    # caller's global state untouched. Data was validated above, so Pyro's per-step distribution
    # checks are switched off for speed.
    with isolated(settings.seed, start=trainee.store_start), pyro.validation_enabled(False):
        if state.rng_state is not None:
            torch.set_rng_state(state.rng_state)
        trainee.train()
        if settings.jit:  # one trace per minibatch size, before the first step and outside the random stream
            epochs.compile()
        for epoch in range(state.epoch, settings.epochs if not state.stopped_early else state.epoch):
            started = time.perf_counter()
            row = epochs.train(epoch, checkpoint)
            stop = False
            if validation is not None:
                stop = epochs.validate(row, validation, checkpoint)
            row["seconds"] = time.perf_counter() - started
            state.rows.append(row)
            state.epoch, state.stopped_early = epoch + 1, stop
            history.best_epoch = state.stopping.best_epoch
            shown.epoch_done(row)
            if checkpoint is not None:  # a run resumed after stopping early knows it is finished
                epochs.save(checkpoint, record)
            if history_path is not None and group.is_main:
                history.save(history_path)
            if stop:
                break
    _finish(trainee, state, history, group, shown, restore_best=x_val is not None and settings.restore_best)
    return history


def _objective_step(trainee: Trainee, program, settings: TrainSettings, group) -> ObjectiveStep:
    """The objective ``settings`` ask for, and the Adam step on the trainee's parameters."""
    vae = trainee.module if isinstance(trainee, ModuleTrainee) else None
    objective = training_objective(settings, vae=vae, plate=program.plate, max_plate_nesting=trainee.max_plate_nesting)
    owner = vae if vae is not None else trainee.parameters
    return ObjectiveStep(owner, trainee.model, trainee.guide, objective, settings.lr, distributed=group.active)


def _start_from_data(trainee: Trainee, x, dynamic, seed: int, train_covariates) -> None:
    """Start an untrained model from the data (data on disk: from a bounded sample of its rows)."""
    on_disk = isinstance(x, RowSource)
    start = (
        x.sample(max(2, min(INIT_SAMPLE_ROWS, CHUNK_BYTES // x.row_bytes)), seed)
        if on_disk
        else epoch_values(x, dynamic, seed, 0)
    )
    trainee.initialize(start, None if on_disk else train_covariates.get("mask"))
    if on_disk:
        del start
        release_freed_memory()


def _validation(program, val_data: Data, settings: TrainSettings, group) -> Validation:
    """One program, its structure and the checked data, reused epoch after epoch. An
    importance-weighted objective is validated on its own K-sample bound, so early stopping and the
    kept epoch follow what is trained; chunks shrink so that K draws cost what one did."""
    particles = settings.num_particles if settings.elbo in IMPORTANCE_WEIGHTED else 1
    return Validation(
        program,
        val_data,
        seed=settings.seed,
        batch_size=max(settings.batch_size, 512 // particles),
        group=group,
        num_particles=particles,
    )


@dataclasses.dataclass
class _Epochs:
    """One epoch of :func:`fit` at a time: its minibatch steps, divergence checks and validation."""

    trainee: Trainee
    step: ObjectiveStep
    state: RunState
    settings: TrainSettings
    x: Any
    dynamic: bool
    covariates: dict
    group: Distributed
    has_val: bool

    def __post_init__(self):
        self.num_data = len(self.x)
        # Each rank's share of an epoch (a DistributedSampler drops the remainder), in minibatches.
        self.steps = math.ceil(self.num_data // self.group.world_size / self.settings.batch_size)
        self.warmup = KLWarmup(self.settings.kl_warmup_epochs, self.steps)
        self.last_finite: dict = {}

    def compile(self) -> None:
        """Trace the compiled objective once for each minibatch size an epoch has."""
        batch_size, n = self.settings.batch_size, self.num_data
        for size in sorted({min(batch_size, n - i * batch_size) for i in range(self.steps)}):
            rows = torch.arange(size)
            batch = {k: v[rows] for k, v in self.covariates.items()}
            self.step.compile(self.x[rows], indices=rows, num_data=n, kl_weight=1.0, **batch)

    def save(self, checkpoint, record) -> None:
        """The checkpoint after an epoch: parameters, optimiser, history and the random stream."""
        self.state.rng_state = torch.get_rng_state()
        if self.group.is_main:
            self.trainee.save(checkpoint, self.state.to_payload(self.step.state_dict(), record))

    def _diverged(self, epoch: int, at_step: int, what: str, use_best: bool, checkpoint) -> None:
        _diverged(self.trainee, self.state, self.last_finite, epoch, at_step, what, checkpoint, use_best)

    def train(self, epoch: int, checkpoint) -> dict[str, float]:
        """Every minibatch step of ``epoch``; its history row (validation and time still to fill)."""
        seed, batch_size, group = self.settings.seed, self.settings.batch_size, self.group
        # What the model falls back to if this epoch diverges (a copy costs far less than an epoch).
        self.last_finite = self.trainee.state_dict()
        if group.active:  # this rank's points, and its own stream of latent draws
            order = group.shard(seed, epoch, self.num_data)
            torch.manual_seed(group.seed_for(seed, epoch))
        else:
            order = epoch_order(seed, epoch, self.num_data)
        x_epoch = epoch_values(self.x, self.dynamic, seed, epoch)
        use_best = self.settings.restore_best and self.has_val
        total = 0.0
        for i in range(self.steps):
            indices = order[i * batch_size : (i + 1) * batch_size]
            weight = self.warmup.weight(epoch, i)
            batch = {k: v[indices] for k, v in self.covariates.items()}
            loss = self.step(x_epoch[indices], indices=indices, num_data=self.num_data, kl_weight=weight, **batch)
            # In a process group the ranks decide together once per epoch (below): a rank that
            # stopped alone would leave the others waiting in the next gradient exchange.
            if not group.active and not math.isfinite(loss):
                self._diverged(epoch, i, f"the training loss became {loss}", use_best, checkpoint)
            total += loss
        if group.active:  # every rank sees the same mean loss, and so takes the same decisions
            total = group.sum(total)[0] / group.world_size
            if not math.isfinite(total):
                self._diverged(epoch, self.steps - 1, f"the training loss became {total}", use_best, checkpoint)
        if not self.trainee.all_finite():
            what = "a parameter became non-finite (a non-finite gradient)"
            self._diverged(epoch, self.steps - 1, what, use_best, checkpoint)
        return {
            "epoch": epoch + 1,
            "kl_weight": weight,
            "train_elbo": -total / self.steps / self.num_data,
            "val_elbo": float("nan"),
            "seconds": 0.0,
        }

    def validate(self, row: dict[str, float], validation: Validation, checkpoint) -> bool:
        """Fill the row's validation ELBO; whether early stopping ends training here."""
        epoch = int(row["epoch"])
        self.trainee.eval()
        row["val_elbo"] = validation()
        self.trainee.train()
        if not math.isfinite(row["val_elbo"]):
            what = f"the validation ELBO became {row['val_elbo']}"
            self._diverged(epoch - 1, self.steps - 1, what, self.settings.restore_best, checkpoint)
        return self.state.stopping.observe(row["val_elbo"], epoch, self.trainee)


def _finish(trainee: Trainee, state: RunState, history: History, group, shown: Progress, *, restore_best: bool) -> None:
    """After the last epoch: the trainee's final state, convergence advice, the best epoch restored."""
    history.stopped_early = state.stopped_early
    trainee.finish()
    if group.active:
        history.rank_difference = group.parameter_difference(trainee.parameters)
    if not history.stopped_early and history.still_rising and group.is_main:
        warn_user(
            history.not_converged("Train for more epochs (resume the checkpoint with a larger epochs) or raise lr."),
            RuntimeWarning,
        )
    shown.close()
    trainee.eval()
    if restore_best and state.stopping.best_state is not None:
        trainee.load_state_dict(state.stopping.best_state)


# ---------------------------------------------------------------------- helpers
def _diverged(
    trainee: Trainee, state: RunState, last_finite: dict, epoch: int, step: int, what: str, checkpoint, use_best: bool
) -> None:
    """Put finite parameters back in the model and raise a ``FloatingPointError`` that says which."""
    if use_best and state.stopping.best_state is not None:
        trainee.load_state_dict(state.stopping.best_state)
        held = f"the parameters of its best validation epoch ({state.stopping.best_epoch})"
    else:
        trainee.load_state_dict(last_finite)
        held = f"the parameters at the end of epoch {epoch}" if epoch else "its parameters from before the first epoch"
    saved = ""
    if checkpoint is not None:
        saved = (
            f" The checkpoint {checkpoint} holds epoch {state.epoch}, the last finished one."
            if state.epoch
            else f" No checkpoint was written ({checkpoint} holds no epoch of this run)."
        )
    raise FloatingPointError(
        f"Training stopped at step {step + 1} of epoch {epoch + 1}: {what}. The parameters left the range "
        f"where the model is finite. The model now holds {held}.{saved} Lower lr, or raise the floor of "
        "the likelihood's positive parameters (min_scale, min_concentration, ...)."
    )
