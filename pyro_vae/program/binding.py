"""The one preamble of every tool: :func:`bind` turns a tool's arguments into a checked program.

Every public tool that reads a model on data (``log_likelihood``, ``compare``, ``mean_elbo``, the
diagnostics, the latent distributions, the predictive functions, ``to_inference_data``) starts with
``bind(...)``, so each refuses the same bad program with the same guidance, before any work:

1. the model and guide become a :class:`~pyro_vae.program.protocol.Program` (:func:`as_program`);
2. the data and covariates are checked against the program (:meth:`Program.data`);
3. a tool that draws from the guide refuses a program without one;
4. the structure is read from one trace (:class:`~pyro_vae.program.sites.Sites`) where a later step needs it;
5. the global-latent policy: latent sites outside the data plate are fixed by ``global_values``
   (``"guide_median"`` or a mapping of values), or the program is refused with the ways to fix it;
   tools that draw the globals with every sample (``draw_globals=True``) keep them random;
6. the support check of a program without its own data check: every observed site's data in its
   distribution's support (a mass function is refused outside it, a density warned about);
7. the leading-dimension contract: two particles are run at once, and a network that takes only
   ``(B, L)`` is refused with the advice to wrap it in :class:`~pyro_vae.FlattenLeading`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..data.splits import COMPLETE_ROWS
from .global_latents import condition_on_globals
from .protocol import Data, Program, as_program
from .sites import Sites
from .support import check_support


@dataclass(frozen=True)
class Bound:
    """A tool's checked arguments.

    Attributes:
        program: the program, with every global latent fixed by the policy.
        data: the checked data ``(N, D)`` and covariates.
        globals_used: how each global latent was fixed (site -> description); empty without globals.
    """

    program: Program
    data: Data
    globals_used: dict[str, str] = field(default_factory=dict)

    @property
    def sites(self) -> Sites:
        """The program's latent and observed sites, read from one trace (cached by the program)."""
        return self.program.sites(self.data)


def bind(
    model: Any,
    x: Any,
    *,
    guide: Callable | None = None,
    covariates: Mapping[str, Any] | None = None,
    plate: str | None = None,
    global_values: Any = None,
    needs_guide: bool = True,
    particles: bool = True,
    draw_globals: bool = False,
    what: str = "x",
    mask: Any = COMPLETE_ROWS,
    scores: bool = True,
) -> Bound:
    """Check a tool's arguments once, in the order above, and return them bound.

    Args:
        model, guide, plate: the program (:func:`~pyro_vae.as_program`).
        x, covariates: the data ``(N, D)`` and its data-aligned keyword arguments.
        global_values: ``None`` (refuse global latents), ``"guide_median"`` or ``{site: value}``.
        needs_guide: refuse a program without a guide (every tool that draws ``z ~ q(z|x)``).
        particles: check that the program runs with a leading particle dimension (every tool
            that draws several ``z`` per point at once).
        draw_globals: the tool draws global latents with every sample (exports, predictive draws),
            so they stay random and ``global_values`` is not used.
        what: the data's name in error messages.
        mask: True where ``x`` was observed (:mod:`pyro_vae.program.missing`); ``x`` may hold NaN
            elsewhere. A tool that takes ``mask=`` passes its own (``None``: a split's mask, if any);
            the default, ``COMPLETE_ROWS``, is for tools that read complete rows and refuses a split
            with missing entries.
        scores: the tool scores or replicates the observed data, so their support is checked
            (step 6); tools that only encode ``x`` or decode codes pass False.
    """
    program = as_program(model, guide, plate=plate)
    data = program.data(x, covariates, what=what, mask=mask)
    if needs_guide:
        program.guide  # noqa: B018 -- refuses a program without a guide, naming what to pass
    globals_used: dict[str, str] = {}
    if not draw_globals:
        program, globals_used = condition_on_globals(program, data, global_values)
    if scores:
        check_support(program, data, program.sites(data))
    if particles:
        program.check_vectorised(data, program.sites(data))
    # A tool that neither scores, fixes globals nor draws particles (decoding given codes) reads no trace here.
    return Bound(program, data, globals_used)
