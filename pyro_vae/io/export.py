"""Export a trained program and data to ArviZ, from traces: an :class:`arviz.InferenceData` under
ArviZ 0.x, an :class:`xarray.DataTree` under ArviZ 1.x, with the same groups, names and values.

Groups and their variables (``S`` draws, ``N`` points); one variable per site of the program::

    posterior              every latent site of the guide    local: (chain, draw, obs, ...)
                                                              global: (chain, draw, ...)
    posterior_predictive   every observed site, x' ~ p(x|z) with z from the posterior
    log_likelihood         every observed site, log p(x_i | z) per draw: (chain, draw, obs)
    prior                  every latent site of the model, drawn from the model itself
    prior_predictive       every observed site, with latents from the prior
    observed_data          every observed site: (obs, ...); NaN at missing entries (mask=)
    constant_data          with mask=: <site>_mask, True where the value was observed

The ``log_likelihood`` group holds ``log p(x_i | z_s)`` for posterior draws, the quantity ArviZ
expects there, read from each observed site's ``fn`` -- the model's own value, whatever its
latents. It is *not* ``log p(x_i)``: each ``z`` is a local latent of its own point, so for
held-out ``log p(x)`` use :func:`pyro_vae.log_likelihood` and :func:`pyro_vae.compare`.

Draws: by default they are laid out as ``(chain, draw)``, the sample dimensions every ArviZ function
assumes unless told otherwise (``az.summary``, ``az.loo``, ``az.compare`` and the plots on both lines).
The draws are independent, so chains only shape them. ArviZ 1.x's own converter of variational fits
(``from_numpyro_svi``) uses one dimension ``sample`` instead; ``sample_dims=("sample",)`` gives that
layout, for which ArviZ 1.x functions take ``sample_dims=["sample"]`` (``az.summary`` also
``kind="stats"``: chain diagnostics need chains); ``az.loo`` of ArviZ 1.3 reads ``chain`` and
``draw`` by name and needs the default layout.

Dimension names: the data points are ``obs`` (``obs_index`` when a site is itself named ``obs``);
a site's event dimensions are ``latent`` (``feature``) when the program has one latent (observed)
site with a one-dimensional event, else ``<site>_dim_<i>``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from .._util.arviz_compat import arviz_line, write_dataset, write_inference_data
from .._util.checks import positive_int
from .._util.isolation import leaves_pyro_state_alone
from .._util.memory import MAX_MEMORY_MB
from .._version import __version__
from ..program.binding import bind
from ..program.sites import Sites
from .export_draws import draw


@leaves_pyro_state_alone
def to_inference_data(
    model: Any,
    x: Any,
    *,
    guide: Callable | None = None,
    covariates: Mapping[str, Any] | None = None,
    plate: str | None = None,
    num_samples: int = 100,
    num_chains: int = 1,
    seed: int = 0,
    obs_coords: np.ndarray | list | None = None,
    max_values: int = 50_000_000,
    max_memory_mb: float = MAX_MEMORY_MB,
    mask: Any = None,
    sample_dims: tuple[str, ...] | list[str] = ("chain", "draw"),
):
    """Draws from the amortized posterior and the prior, with their predictive distributions.

    Args:
        model: a :class:`~pyro_vae.VAE` or a Pyro program (see :mod:`pyro_vae.program`).
        x: observed data with the points along the first dimension.
        guide, covariates, plate: as for :func:`pyro_vae.log_likelihood`.
        num_samples: draws per chain.
        num_chains: independent chains; the draws are independent anyway, chains only shape them.
        seed: seeds all draws.
        obs_coords: labels for the ``obs`` dimension (default ``0..N-1``).
        max_values: refuse to build groups with more numbers than this (each predictive group holds
            ``chains * draws * N * D`` of them); raise it deliberately for large exports.
        max_memory_mb: rough bound on the memory of the traces behind one chunk of points (their
            decoder outputs included), measured on the program; the points are exported in chunks.
        mask: True where ``x`` was observed (NaN allowed elsewhere): missing entries are NaN in
            ``observed_data`` and left out of ``log_likelihood``, and ``constant_data`` holds the
            mask as ``<site>_mask``.
        sample_dims: ``("chain", "draw")`` (default) or ``("sample",)`` (one dimension of
            ``num_samples`` draws, ``num_chains`` must be 1), as described in the module docstring.

    Returns: an :class:`arviz.InferenceData` (ArviZ 0.x) or :class:`xarray.DataTree` (ArviZ 1.x)
    with the groups listed in the module docstring; its attrs record the inference library (Pyro), pyro_vae's version, the observed sites'
    distributions and, for a VAE, its configuration as JSON.
    """
    for value, name in ((num_samples, "num_samples"), (num_chains, "num_chains")):
        positive_int(value, name)
    sample_dims = _checked_sample_dims(sample_dims, num_chains)
    arviz_line()  # an unsupported ArviZ is refused before any work
    bound = bind(model, x, guide=guide, covariates=covariates, plate=plate, draw_globals=True, mask=mask)
    program, data, sites = bound.program, bound.data, bound.sites
    sites.refuse_model_enumeration("to_inference_data")
    n = len(data)
    draws = num_samples * num_chains
    per_point_values = sum(int(math.prod(sites.event_shapes[k])) for k in sites.observed)
    if draws * n * per_point_values > max_values:
        raise ValueError(
            f"The predictive groups would hold {draws * n * per_point_values:,} numbers (draws x points x "
            f"features), more than max_values={max_values:,}; pass fewer points or draws, or raise max_values."
        )
    if obs_coords is None:
        obs_coords = np.arange(n)
    elif len(obs_coords) != n:
        raise ValueError(f"obs_coords has {len(obs_coords)} labels for {n} observations.")

    attrs = {
        "pyro_vae_version": __version__,
        "likelihood": program.name or ", ".join(sites.observed),
        "observed_sites": json.dumps(list(sites.observed)),
        "latent_sites": json.dumps(list(sites.local + sites.globals)),
    }
    if hasattr(model, "config"):
        attrs["model_config"] = json.dumps(model.config())
    drawn = draw(program, data, sites, draws, seed=seed, max_memory_mb=max_memory_mb)
    return TraceConverter(drawn, sites, num_chains=num_chains, num_samples=num_samples, obs_coords=obs_coords,
                          attrs=attrs, sample_dims=sample_dims).to_inference_data()  # fmt: skip


def _checked_sample_dims(sample_dims: Any, num_chains: int) -> tuple[str, ...]:
    layout = tuple(sample_dims) if isinstance(sample_dims, (tuple, list)) else sample_dims
    if layout not in (("chain", "draw"), ("sample",)):
        raise ValueError(f"sample_dims must be ('chain', 'draw') or ('sample',), got {sample_dims!r}.")
    if layout == ("sample",) and num_chains != 1:
        raise ValueError(f"sample_dims=('sample',) has no chains; got num_chains={num_chains}. Pass num_chains=1.")
    return layout


class TraceConverter:
    """ArviZ's converter shape over draws taken once (:func:`~pyro_vae.io.export_draws.draw`): the
    draws become NumPy arrays with their dimension names and coordinates here, and one small method
    per group hands them to the writer (:mod:`pyro_vae._util.arviz_compat`), the only part that depends on
    the ArviZ version installed. The groups are those of the module docstring.
    """

    def __init__(
        self,
        drawn: dict[str, dict[str, torch.Tensor]],
        sites: Sites,
        *,
        num_chains: int,
        num_samples: int,
        obs_coords: Any,
        attrs: dict[str, str],
        sample_dims: tuple[str, ...] = ("chain", "draw"),
    ):
        self.num_chains, self.num_samples, self.attrs = num_chains, num_samples, attrs
        self.sample_dims = sample_dims
        # Dimension names are chosen apart from every variable name: xarray makes a dimension a
        # coordinate, so a site named like one ("obs", "latent", "feature") would collide with it.
        names = set(sites.event_shapes) | {f"{k}_mask" for k in drawn.get("mask", {})}
        reserved = sorted(names & set(sample_dims))
        if reserved:
            raise ValueError(
                f"The site(s) {reserved} share a name with ArviZ's sample dimensions {list(sample_dims)}; "
                "rename the site(s) in the program to export them."
            )
        taken = names | set(sample_dims)
        self.obs_dim = _free_name("obs" if "obs" not in taken else "obs_index", taken)
        self.dims = _dims(sites, {**drawn["posterior"], **drawn["predictive"]}, self.obs_dim, taken)
        self.coords: dict[str, np.ndarray] = {self.obs_dim: np.asarray(obs_coords)}
        for name, values in {**drawn["posterior"], **drawn["predictive"]}.items():
            for dim, size in zip(self.dims[name], values.shape[1:]):
                self.coords.setdefault(dim, np.arange(size))
        self.arrays = {
            group: {
                k: self._shaped(v) if group not in ("observed", "mask") else v.detach().cpu().numpy()
                for k, v in values.items()
            }
            for group, values in drawn.items()
        }

    def _shaped(self, tensor: torch.Tensor) -> np.ndarray:
        """``(chains * draws, ...)`` -> ``(chain, draw, ...)``, or kept as ``(sample, ...)``."""
        lead = (self.num_chains, self.num_samples) if len(self.sample_dims) == 2 else (self.num_samples,)
        return tensor.reshape(*lead, *tensor.shape[1:]).detach().cpu().numpy()

    def _dataset(self, group: str, *, per_point: bool = False, sampled: bool = True) -> Any:
        values = self.arrays[group]
        dims = {k: [self.obs_dim] if per_point else self.dims[k] for k in values}
        if group == "mask":  # one variable per masked site, named <site>_mask, laid out like its data
            values = {f"{k}_mask": v for k, v in values.items()}
            dims = {f"{k}_mask": self.dims[k] for k in self.arrays[group]}
        return write_dataset(
            values, coords=self.coords, dims=dims, attrs=self.attrs, sample_dims=self.sample_dims if sampled else ()
        )

    def posterior_to_xarray(self) -> Any:
        return self._dataset("posterior")

    def posterior_predictive_to_xarray(self) -> Any:
        return self._dataset("predictive")

    def log_likelihood_to_xarray(self) -> Any:
        return self._dataset("log_lik", per_point=True)

    def prior_to_xarray(self) -> Any:
        return self._dataset("prior")

    def prior_predictive_to_xarray(self) -> Any:
        return self._dataset("prior_pred")

    def observed_data_to_xarray(self) -> Any:
        return self._dataset("observed", sampled=False)

    def constant_data_to_xarray(self) -> Any:
        """The masks of data with missing entries (True where observed), as ``<site>_mask``."""
        return self._dataset("mask", sampled=False)

    def to_inference_data(self) -> Any:
        groups = {
            "posterior": self.posterior_to_xarray(),
            "posterior_predictive": self.posterior_predictive_to_xarray(),
            "log_likelihood": self.log_likelihood_to_xarray(),
            "prior": self.prior_to_xarray(),
            "prior_predictive": self.prior_predictive_to_xarray(),
            "observed_data": self.observed_data_to_xarray(),
        }
        if self.arrays.get("mask"):
            groups["constant_data"] = self.constant_data_to_xarray()
        return write_inference_data(groups)


def _free_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base`` with underscores appended until it is no variable's name; then taken."""
    name = base
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def _dims(sites: Sites, values: dict[str, torch.Tensor], obs_dim: str, taken: set[str]) -> dict[str, list[str]]:
    """Dimension names after the sample dimensions for every site, as described in the module docstring;
    none is the name of a variable (``taken``)."""
    out = {}
    taken = set(taken)
    groups = (
        (sites.local + sites.globals, _free_name("latent", taken)),
        (sites.observed, _free_name("feature", taken)),
    )
    for names, single in groups:
        one = len(names) == 1
        for name in names:
            event = len(sites.event_shapes[name])
            local = name in sites.local or name in sites.observed
            lead = [obs_dim] if local else []
            if name in values:
                extra = values[name].ndim - 1 - len(lead) - event
            else:
                extra = 0
            rest = [_free_name(f"{name}_dim_{i}", taken) for i in range(extra + event)]
            if one and event == 1 and extra == 0:
                rest = [single]
            out[name] = ["chain", "draw", *lead, *rest]
    return {k: v[2:] for k, v in out.items()}
