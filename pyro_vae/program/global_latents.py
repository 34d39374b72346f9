"""The global-latent policy of every per-point tool: latent sites outside the data plate are fixed.

A per-point ``log p(x_i)`` exists only given the values of a program's global latents (a shared
offset, a global scale). :func:`condition_on_globals` fixes them -- at the guide's median, or at
values the user gives -- or refuses the program with both fixes named (:func:`pyro_vae.program.bind`
applies it for every tool).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from pyro import poutine

from .protocol import Data, Program, wrapped_program
from .sites import Sites

#: How the value of a global latent was chosen when a tool conditions on it.
GLOBAL_POLICIES = ("guide_median",)
_MEDIAN_DRAWS = 201


def condition_on_globals(program: Program, data: Data, values: Any) -> tuple[Program, dict[str, str]]:
    """The program with every global latent fixed, and a description of the values used.

    ``values`` is ``None`` (refuse when there are global latents), ``"guide_median"`` or a
    mapping from site name to value.
    """
    if program._fixed_globals is not None:  # fixed already (a program passed on by a tool)
        if values is not None:
            raise ValueError("The global latents of this program are fixed already; pass no global_values.")
        return program, dict(program._fixed_globals)
    sites = program.sites(data)
    if not sites.globals:
        if values not in (None, "guide_median") and values:
            raise ValueError(f"global_values names {sorted(values)}, but this program has no global latent sites.")
        return program, {}
    if values is None:
        raise ValueError(
            f"The program has global latent site(s) {list(sites.globals)} outside the plate "
            f"{program.plate!r}: a per-point log p(x_i) exists only given their values. Pass "
            "global_values='guide_median' to condition on the guide's median, or "
            "global_values={'" + sites.globals[0] + "': value} to condition on values of your own."
        )
    if isinstance(values, str):
        if values not in GLOBAL_POLICIES:
            raise ValueError(f"global_values must be one of {GLOBAL_POLICIES} or a mapping of site names to values.")
        chosen = _guide_median(program, data, sites)
        described = {name: f"guide median ({_MEDIAN_DRAWS} draws)" for name in chosen}
    elif isinstance(values, Mapping):
        missing = sorted(set(sites.globals) - set(values))
        unknown = sorted(set(values) - set(sites.globals))
        if missing or unknown:
            raise ValueError(
                f"global_values must give exactly the global sites {list(sites.globals)}; "
                f"missing {missing}, unknown {unknown}."
            )
        chosen = {
            k: torch.as_tensor(v, dtype=data.x.dtype if not torch.is_tensor(v) else None) for k, v in values.items()
        }
        described = {name: "given value" for name in chosen}
    else:
        raise TypeError("global_values must be None, 'guide_median' or a mapping of site names to values.")
    program = program.replace(
        model=wrapped_program(poutine.condition(program.model, data=chosen), program.model),
        guide=wrapped_program(poutine.condition(program._guide, data=chosen), program._guide)
        if program._guide
        else None,
    )
    program._sites, program._fixed_globals = sites, dict(described)
    return program, described


@torch.no_grad()
def _guide_median(program: Program, data: Data, sites: Sites) -> dict[str, torch.Tensor]:
    rows = data.rows(slice(0, 1))
    draws: dict[str, list[torch.Tensor]] = {name: [] for name in sites.globals}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        _draw_globals(program, rows, sites, draws)
    return {name: torch.stack(values).median(dim=0).values for name, values in draws.items()}


def _draw_globals(program: Program, rows: Data, sites: Sites, draws: dict) -> None:
    for _ in range(_MEDIAN_DRAWS):
        trace = poutine.trace(program.guide).get_trace(rows.x, **program.arguments(program.guide, rows, None, None))
        for name in sites.globals:
            if name not in trace.nodes:
                raise ValueError(
                    f"The global latent {name!r} is not sampled by the guide; pass its value in global_values."
                )
            draws[name].append(trace.nodes[name]["value"])
