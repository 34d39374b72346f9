"""Chunk planning: how many points and particles one chunk of a computation may hold so that its
allocations stay near a memory bound, measured on the program itself."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

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

    The bytes per draw are measured on the program itself (see :meth:`Program.bytes_per_draw`),
    on the first rows of ``x`` or, for a VAE, on its template batch.
    """
    program = as_program(model, guide)
    data = program.data(x, covariates) if x is not None else program.template(1)
    return plan_chunks(program, data, program.sites(data), num_particles, max_memory_mb)


def plan_chunks(
    program: Program, data: Data, sites: Sites, num_particles: int, max_memory_mb: float
) -> tuple[int, int]:
    with torch.random.fork_rng(devices=[]):
        per_draw = program.bytes_per_draw(data, sites)
    draws = max(1, int(max_memory_mb * 2**20 // per_draw))
    if draws >= num_particles:
        return draws // num_particles, num_particles
    return 1, draws
