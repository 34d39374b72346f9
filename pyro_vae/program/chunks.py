"""Chunk planning: how many points and particles one chunk of a computation may hold so that its
allocations stay near a memory bound, measured on the program itself."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pyro
import torch

from .._util.checks import positive_number
from .._util.compat import TorchDispatchMode
from .protocol import Data, Program, as_program
from .sites import Sites


def chunk_plan(
    model: Any,
    num_particles: int,
    max_memory_mb: float,
    x: Any = None,
    *,
    guide: Callable | None = None,
    covariates: Mapping[str, Any] | None = None,
) -> tuple[int, int]:
    """``(points, particles)`` per chunk so one chunk's allocations stay near ``max_memory_mb``.

    The bytes per draw are measured on the program itself (see :func:`bytes_per_draw`),
    on the first rows of ``x`` or, for a VAE, on its template batch.
    """
    program = as_program(model, guide)
    data = program.data(x, covariates) if x is not None else program.template(1)
    return plan_chunks(program, data, program.sites(data), num_particles, max_memory_mb)


def plan_chunks(
    program: Program, data: Data, sites: Sites, num_particles: int, max_memory_mb: float
) -> tuple[int, int]:
    positive_number(max_memory_mb, "max_memory_mb")
    with torch.random.fork_rng(devices=[]):
        per_draw = bytes_per_draw(program, data, sites)
    draws = max(1, int(max_memory_mb * 2**20 // per_draw))
    if draws >= num_particles:
        return draws // num_particles, num_particles
    return 1, draws


def bytes_per_draw(program: Program, data: Data, sites: Sites) -> float:
    """Bytes allocated per (point, particle) by one run of guide and model, measured.

    Two runs with 2 and 6 particles on the same rows are counted tensor by tensor; their
    difference divided by the extra draws excludes what a run allocates once (weights).
    """
    rows = data.rows(slice(0, min(4, len(data))))
    counts = []
    for particles in (2, 6):
        with _AllocationCounter() as counter, torch.no_grad(), pyro.validation_enabled(False):
            program.traces(
                rows,
                particles,
                indices=torch.arange(len(rows)),
                num_data=len(data),
                sites=sites,
                guide=program.optional_guide or _no_guide,
                enumerate=bool(sites.enumerated),
            )
        counts.append(counter.bytes)
    return max((counts[1] - counts[0]) / (4 * len(rows)), 64.0)


def _no_guide(*args, **kwargs) -> None:
    return None


class _AllocationCounter(TorchDispatchMode):
    """Sum of the bytes of every new tensor storage created inside the block."""

    def __init__(self):
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor) and not tensor._is_view():
                self.bytes += tensor.untyped_storage().nbytes()
        return out
