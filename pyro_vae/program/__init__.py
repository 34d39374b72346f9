"""The program protocol: what every tool reads from a model and guide, and how it binds its arguments.

* :mod:`~pyro_vae.program.protocol` -- :class:`Program` (model, guide, data plate) and :class:`Data`;
* :mod:`~pyro_vae.program.sites` -- which sites are latent, observed, local or global (:class:`Sites`);
* :mod:`~pyro_vae.program.weights` -- per-point log importance weights;
* :mod:`~pyro_vae.program.chunks` -- chunk sizes under a memory bound;
* :mod:`~pyro_vae.program.bind` -- :func:`bind`, the one preamble of every tool."""

from .binding import Bound, bind
from .chunks import chunk_plan
from .global_latents import GLOBAL_POLICIES
from .protocol import PARTICLES, Data, Program, as_program
from .sites import Sites
from .weights import log_weights

__all__ = [
    "Bound",
    "bind",
    "as_program",
    "chunk_plan",
    "Data",
    "GLOBAL_POLICIES",
    "log_weights",
    "PARTICLES",
    "Program",
    "Sites",
]
