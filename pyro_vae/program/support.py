"""Observed data inside their distributions' supports: the check a VAE's likelihood makes, for any program.

Pyro scores values outside a support without complaint when validation is off
(``validate_args=False``, as Pyro's VAE tutorial writes its Bernoulli), and the sum is then no
log-probability of the data. :func:`check_support` runs the model over the data once (in chunks)
and reads every observed site's value and ``fn.support`` from the trace.
"""

from __future__ import annotations

import pyro
import torch
from pyro import poutine
from torch.distributions import constraints

from .._util.user_warnings import warn_user
from .._util.value_checks import all_finite, in_support
from .protocol import Data, Program
from .sites import Sites


def check_support(program: Program, data: Data, sites: Sites, *, chunk_rows: int = 4096) -> None:
    """The support check a VAE's likelihood makes, for a program without its own ``check``: the
    data of every observed site must lie in its distribution's support.

    Pyro scores values outside a support without complaint when validation is off
    (``validate_args=False``, as Pyro's VAE tutorial writes its Bernoulli), and the result is no
    density of the data. Outside a mass function's support (grey levels under a Bernoulli) the
    program is refused by name; outside a density's, one warning is printed. Entries the program
    masks itself, and missing entries of ``mask=``, are not data and are not checked.
    """
    if program.has_own_check:
        return
    with torch.random.fork_rng(devices=[]), torch.no_grad(), pyro.validation_enabled(False):
        for start in range(0, len(data), chunk_rows):
            rows = torch.arange(start, min(start + chunk_rows, len(data)))
            chunk = data.rows(rows)
            masking = program.masking(chunk)
            model = masking(program.model) if masking else program.model
            trace = poutine.trace(model).get_trace(chunk.x, **program.arguments(program.model, chunk, rows, len(data)))
            for name in sites.observed:
                if _outside_support(trace.nodes[name], name, bool(sites.discrete.get(name))):
                    return  # warned once for a density; a mass function raised


def _outside_support(node: dict, name: str, discrete: bool) -> bool:
    """Refuse (mass function) or warn once (density) when the observed values of ``node`` leave its support."""
    fn, value = node["fn"], node["value"]
    if all_finite(value) and in_support(value, fn.support):
        return False
    support = fn.support
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    ok = support.check(value)  # one entry per value: every event dimension kept
    mask = node.get("mask")
    if isinstance(mask, torch.Tensor):  # entries the program masks itself are not data
        extra = ok.ndim - mask.ndim
        ok = ok | ~mask.reshape(*mask.shape, *([1] * max(0, extra))).expand(ok.shape)
    if bool(ok.all()):
        return False
    count, example = int((~ok).sum()), float(value[~ok].reshape(-1)[0])
    kind = type(getattr(fn, "base_dist", fn)).__name__
    if discrete:
        raise ValueError(
            f"The observed site {name!r} is a {kind}, a mass function on {support}, but {count} of its data values "
            f"lie outside that support (for example {example:g}); its log_prob would not be a probability of the "
            "data (validate_args=False only hides this). Binarise or round the data, or choose a density with that "
            "support (ContinuousBernoulli for values in [0, 1])."
        )
    warn_user(
        f"The observed site {name!r} ({kind}) has {count} data value(s) outside its support {support} (for "
        f"example {example:g}); its log-densities there are not those of a density of the data.",
        UserWarning,
    )
    return True
