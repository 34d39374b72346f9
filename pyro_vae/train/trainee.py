"""What :func:`~pyro_vae.fit` trains: a :class:`~pyro_vae.VAE`, or any Pyro program.

The training loop knows a :class:`Trainee` only: its training model and guide, its parameters,
their state (to keep the best epoch, to fall back after a divergence, to checkpoint and resume)
and how it is saved. There are two:

* :class:`ModuleTrainee` -- a ``VAE``: every parameter belongs to the module, the checkpoint is a
  saved model (:func:`pyro_vae.save`), training starts from the data (``init_from_data``), and a
  private, empty parameter store keeps two VAEs in one process apart;
* :class:`ProgramTrainee` -- a model and guide written by hand: its parameters are the
  ``pyro.param`` and ``pyro.module`` sites it registers in Pyro's parameter store (the caller's,
  as with ``pyro.infer.SVI``, so the trained values are the program's afterwards); the
  checkpoint holds those values (:mod:`pyro_vae.io.parameters`).

A program's training model and guide take the loop's keyword arguments: ``indices`` and
``num_data`` (passed on where the program declares them), the KL weight of warm-up, and the
covariates. Sites inside the data plate are scaled by ``N / size`` of the plate as the program
declares it: a plate of the minibatch's size ``B`` gets ``N / B``, and so does a plate declared
without a size (``pyro.plate("data")``, which Pyro lets broadcast over the rows); one declared as
``pyro.plate("data", num_data, subsample=indices)`` scales itself. Warm-up multiplies every latent
site's log-density (model and guide) by the KL weight ``beta``, so the objective is
``E_q[log p(x|z)] - beta KL``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pyro
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger

from .._util.compat import active_plate_size
from .._util.isolation import isolated
from ..io import checkpoint as ckpt
from ..io.parameters import check_fits, read_parameters, write_parameters
from ..program.protocol import Data, Program
from ..vae.initialization import initialize_from_data
from ..vae.model import VAE


class Trainee:
    """The interface the training loop uses; see the module docstring."""

    #: What the private parameter store of the run starts with (:func:`~pyro_vae._util.isolation.isolated`).
    store_start = "caller"
    #: Plate dimensions the program nests (the objective's ``max_plate_nesting``).
    max_plate_nesting = 1

    model: Callable
    guide: Callable
    parameters: list[torch.Tensor]

    def state_dict(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def save(self, path, training: dict) -> None:
        raise NotImplementedError

    def resume(self, path, check: Callable[[dict], dict]) -> dict:
        """Read the checkpoint ``path``, pass its training dict through ``check`` (which raises on a
        damaged one), and only then load its parameters; returns what ``check`` returned."""
        raise NotImplementedError

    def initialize(self, values: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Start from the training data (a VAE's data-driven start; a program starts where it is);
        ``mask`` is True where ``values`` were observed."""

    def train(self) -> None:
        """Put networks in training mode."""

    def eval(self) -> None:
        """Put networks in evaluation mode."""

    def finish(self) -> None:
        """Mark the model trained."""

    def all_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.parameters)

    @property
    def needs_start(self) -> bool:
        """Whether the run should call :meth:`initialize` (an untrained model asking for it)."""
        return False


class ModuleTrainee(Trainee):
    """A :class:`~pyro_vae.VAE`: one ``nn.Module`` owning every parameter."""

    store_start = "empty"

    def __init__(self, vae: VAE, init_from_data: bool, first_rows: Data | None = None):
        if first_rows is not None:
            # The guide runs once on the first rows (in a private Pyro state), so that covariates the
            # VAE cannot take are refused before the data-driven start changes any parameter.
            program, rows = vae.as_program(), torch.arange(len(first_rows))
            with isolated(None), torch.no_grad(), pyro.validation_enabled(False):
                vae.guide(first_rows.x, **program.arguments(vae.guide, first_rows, rows, len(first_rows)))
        self.module = vae
        self.model, self.guide = vae.model, vae.guide
        self.parameters = list(vae.parameters())
        self._start = init_from_data and not vae.trained

    def state_dict(self) -> dict[str, torch.Tensor]:
        return copy.deepcopy(self.module.state_dict())

    def load_state_dict(self, state):
        self.module.load_state_dict(state)

    def save(self, path, training: dict) -> None:
        ckpt.save(self.module, path, training=training)

    def resume(self, path, check):
        payload = ckpt.read_checkpoint(path)
        if "training" not in payload:
            raise ValueError(f"{path} holds a saved model, not a training checkpoint; it cannot be resumed.")
        saved_config = payload["config_dict"]
        current = self.module.config()
        if saved_config != current:
            differing = sorted(k for k in {*saved_config, *current} if saved_config.get(k) != current.get(k))
            raise ValueError(f"{path} was written for another architecture (differs in {differing}).")
        training = check(payload["training"])
        ckpt.load_state(self.module, payload["state_dict"], path)
        return training

    @property
    def needs_start(self) -> bool:
        return self._start

    def initialize(self, values, mask=None):
        initialize_from_data(self.module, values, checked=True, mask=mask)

    def train(self):
        self.module.train()

    def eval(self):
        self.module.eval()

    def finish(self):
        self.module.trained = True


class ProgramTrainee(Trainee):
    """A hand-written program: the parameters it registers in Pyro's parameter store.

    Building it runs the guide and the model once on the first rows of ``data`` (without touching
    the caller's random state) so that every ``pyro.param`` and ``pyro.module`` site is registered
    in the caller's store; those are the parameters trained. ``nn.Module`` models or guides
    (``PyroModule`` s) also switch between training and evaluation mode.
    """

    def __init__(self, program: Program, data: Data, num_data: int, *, max_plate_nesting: int = 1):
        self.program, self.max_plate_nesting = program, max_plate_nesting
        self.model = _training_callable(program, program.model, num_data)
        self.guide = _training_callable(program, program.guide, num_data)
        rows = data.rows(slice(0, min(2, len(data))))
        names: dict[str, None] = {}
        with torch.random.fork_rng(devices=[]), pyro.validation_enabled(False):
            for fn in (program.guide, program.model):
                trace = poutine.trace(fn, param_only=True).get_trace(
                    rows.x, **program.arguments(fn, rows, torch.arange(len(rows)), num_data)
                )
                names.update(dict.fromkeys(n for n, site in trace.nodes.items() if site["type"] == "param"))
        store = dict(pyro.get_param_store().named_parameters())
        self.names = [name for name in names if name in store]
        if not self.names:
            raise ValueError(
                "The model and guide register no parameters (pyro.param or pyro.module): there is nothing to train."
            )
        self.parameters = [store[name] for name in self.names]
        self.modules = [fn for fn in (program.model, program.optional_guide) if isinstance(fn, torch.nn.Module)]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in zip(self.names, self.parameters)}

    @torch.no_grad()
    def load_state_dict(self, state):
        for name, p in zip(self.names, self.parameters):
            p.copy_(state[name])

    def save(self, path, training: dict) -> None:
        write_parameters(self.state_dict(), path, training=training)

    def resume(self, path, check):
        payload = read_parameters(path)
        if "training" not in payload:
            raise ValueError(f"{path} holds saved parameters, not a training checkpoint; it cannot be resumed.")
        check_fits(payload["state_dict"], self.state_dict(), path)
        training = check(payload["training"])
        self.load_state_dict(payload["state_dict"])
        return training

    def train(self):
        for module in self.modules:
            module.train()

    def eval(self):
        for module in self.modules:
            module.eval()


class _TrainingScale(Messenger):
    """Scales sites inside the data plate to the whole data set and latent sites by the KL weight."""

    def __init__(self, plate: str, num_data: int, batch: int, kl_weight):
        super().__init__()
        self.plate, self.num_data, self.batch, self.kl_weight = plate, num_data, batch, kl_weight

    def _process_message(self, msg):
        if msg["type"] != "sample":
            return
        factor = 1.0
        if any(frame.name == self.plate for frame in msg["cond_indep_stack"]):
            # A frame records the subsample's size, not the plate's; a plate without a size runs over
            # the rows passed to the program (the minibatch).
            declared = active_plate_size(self.plate) or self.batch
            if declared != self.num_data:
                factor = self.num_data / declared
        if not msg["is_observed"]:
            factor = factor * self.kl_weight
        if not (isinstance(factor, float) and factor == 1.0):
            msg["scale"] = factor * msg["scale"]


def _training_callable(program: Program, fn: Callable, num_data: int) -> Callable:
    """``fn`` called by the loop as ``fn(x, indices=..., num_data=..., kl_weight=..., **covariates)``."""

    def call(x, *, indices=None, num_data: int = num_data, kl_weight=1.0, mask=None, **covariates):
        data = Data(x, covariates, mask)
        arguments = program.arguments(fn, data, indices, num_data)
        # The model's missing entries are left out of its likelihood (unless it masks them itself).
        masking = program.masking(data) if fn is program.model else None
        with _TrainingScale(program.plate, num_data, x.shape[0], kl_weight):
            if masking is None:
                return fn(x, **arguments)
            with masking:
                out = fn(x, **arguments)
            masking.check_applied()
            return out

    setattr(call, "__wrapped_program__", getattr(fn, "__wrapped_program__", fn))
    return call
