"""Missing entries filled in by the model: importance-weighted imputation (Mattei & Frellsen 2019).

For a point with observed entries ``x_o`` and missing ``x_m``, ``S`` draws ``z_s ~ q(z | x_o)`` and
their normalised weights ``w_s ∝ p(x_o, z_s) / q(z_s | x_o)`` give

.. math::

    \\mathbb{E}[x_m \\mid x_o] \\approx \\sum_s w_s\\, \\mathbb{E}[x_m \\mid z_s], \\qquad
    x_m^{(k)} \\sim p(x_m \\mid z_{s_k}),\\; s_k \\sim \\mathrm{Categorical}(w),

the self-normalised importance-sampling estimate of the conditional mean and draws from the
conditional by sampling importance resampling (MIWAE, Mattei & Frellsen 2019, section 4). Both
converge to the model's own ``p(x_m | x_o)`` as ``S`` grows, whatever the guide; unweighted
posterior-predictive draws (``w_s = 1/S``) converge only if ``q(z|x_o)`` is the posterior.
Observed entries are returned as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyro
import torch

from .._util.checks import positive_int
from .._util.isolation import isolated, leaves_pyro_state_alone
from ..data.missing_values import is_data_source, read_missing
from ..data.splits import Split
from ..program.binding import bind
from ..program.protocol import as_program
from ..program.sites import site_values
from ..program.weights import point_weights
from .predictive import MAX_VALUES, check_output_size

#: Particles times rows of one chunk of imputation work.
_DRAWS_PER_CHUNK = 2**16


@dataclass(frozen=True)
class Imputation:
    """Imputed data.

    Attributes:
        mean: ``x`` with each missing entry replaced by ``E[x_m | x_o]``, shape ``(N, D)``.
        draws: ``num_samples`` completions from ``p(x_m | x_o)``, shape ``(num_samples, N, D)``;
            observed entries are those of ``x`` in every draw.
        mask: True where ``x`` was observed, shape ``(N, D)``.
        effective_sample_size: per point, ``1 / sum_s w_s^2`` of the normalised weights, ``(N,)``:
            near ``num_particles`` when the guide matches the posterior, near 1 when one draw dominates
            (then raise ``num_particles``).
        num_particles: ``S``.
    """

    mean: torch.Tensor
    draws: torch.Tensor
    mask: torch.Tensor
    effective_sample_size: torch.Tensor
    num_particles: int
    #: The program's observed site the imputations fill (a VAE's ``"x"``).
    site: str = "x"

    @property
    def observed(self) -> torch.Tensor:
        """The data as given: observed entries, NaN where missing, shape ``(N, D)``."""
        return torch.where(self.mask, self.mean, torch.full_like(self.mean, float("nan")))

    def to_inference_data(
        self, *, var_name: str | None = None, sample_dims: tuple[str, ...] = ("chain", "draw")
    ) -> Any:
        """The multiple imputations as ArviZ data: ``posterior_predictive[var_name]`` holds the draws
        (one chain of ``num_samples``, dimensions ``(chain, draw, obs, feature)``), ``observed_data`` the
        data with NaN where missing, ``constant_data["mask"]`` the mask; ``var_name`` defaults to the
        observed site's name. ArviZ's summaries and
        ``plot_ppc`` read it; an :class:`arviz.InferenceData` on ArviZ 0.x, a ``DataTree`` on 1.x."""
        from .._util.arviz_compat import write_dataset, write_inference_data

        if self.draws.shape[0] == 0:
            raise ValueError("This imputation holds no draws; impute with num_samples > 0 to export them.")
        if len(sample_dims) not in (1, 2):
            raise ValueError(f"sample_dims must be ('chain', 'draw') or one name, got {sample_dims!r}.")
        var_name = self.site if var_name is None else var_name
        draws = self.draws.detach().cpu().numpy()
        if len(sample_dims) == 2:
            draws = draws[None]
        n, d = self.mean.shape[0], self.mean.shape[-1]
        # Dimension names other than the variable's own (xarray would make them one coordinate).
        obs, feature = (name if name != var_name else f"{name}_dim" for name in ("obs", "feature"))
        coords = {obs: np.arange(n), feature: np.arange(d)}
        dims = {var_name: [obs, feature]}
        attrs = {"imputation": f"importance-weighted, {self.num_particles} particles per point"}

        def group(values, dims, sampled):
            return write_dataset(
                values, coords=coords, dims=dims, attrs=attrs, sample_dims=sample_dims if sampled else ()
            )

        return write_inference_data(
            {
                "posterior_predictive": group({var_name: draws}, dims, True),
                "observed_data": group({var_name: self.observed.numpy()}, dims, False),
                "constant_data": group({"mask": self.mask.numpy()}, {"mask": [obs, feature]}, False),
            }
        )

    def to_anndata(self, adata: Any = None, *, layer: str = "imputed") -> Any:
        """A copy of ``adata`` (or a new ``anndata.AnnData`` of the imputed means) with the layers
        ``layer`` (``mean``: observed entries as given, missing ones at ``E[x_m | x_o]``) and
        ``f"{layer}_sd"`` (each entry's standard deviation over the draws; 0 where observed, NaN
        without draws). ``adata`` itself is left as it was."""
        from ..data.anndata_files import import_anndata

        anndata = import_anndata()
        mean = self.mean.detach().cpu().numpy()
        if adata is None:
            adata = anndata.AnnData(X=mean.copy())
        elif tuple(adata.shape) != tuple(mean.shape):
            raise ValueError(f"adata has shape {tuple(adata.shape)} but the imputation covers {tuple(mean.shape)}.")
        else:
            adata = adata.copy()
        if not isinstance(layer, str) or not layer or "/" in layer:
            raise ValueError(f"layer must be a non-empty name without '/', got {layer!r}.")
        taken = [name for name in (layer, f"{layer}_sd") if name in adata.layers]
        if taken:
            raise ValueError(f"adata already has the layer(s) {taken}; choose another layer= name.")
        spread = self.draws.std(0, correction=0) if self.draws.shape[0] else torch.full_like(self.mean, float("nan"))
        adata.layers[layer] = mean
        adata.layers[f"{layer}_sd"] = spread.detach().cpu().numpy()
        return adata

    def __repr__(self) -> str:
        missing = int((~self.mask).sum())
        return (
            f"Imputation({self.mean.shape[0]} rows, {missing} missing entries, {self.draws.shape[0]} draws each, "
            f"{self.num_particles} particles; median effective sample size "
            f"{float(self.effective_sample_size.float().median()):.1f})"
        )


@leaves_pyro_state_alone
@torch.no_grad()
def impute(
    model: Any,
    x: Any,
    *,
    mask: Any = None,
    num_particles: int = 1000,
    num_samples: int = 10,
    guide: Callable | None = None,
    covariates: Mapping[str, Any] | None = None,
    plate: str | None = None,
    global_values: Any = None,
    seed: int = 0,
    max_values: int = MAX_VALUES,
) -> Imputation:
    """Importance-weighted imputation of the entries of ``x`` where ``mask`` is False.

    Args:
        model: a :class:`~pyro_vae.VAE` (best built with ``missing=True``) or a Pyro program with ``guide=``.
            A VAE that is probabilistic PCA or factor analysis (linear decoder, Gaussian likelihood,
            standard normal prior) draws ``z`` from its exact posterior given the observed entries
            (:mod:`pyro_vae.vae.exact`), not from its encoder: every weight is then equal and the
            estimates are exact up to the Monte Carlo error of the draws. Pass ``guide=vae.guide``
            to use the encoder.
        x: data ``(N, D)``; entries where ``mask`` is False may be NaN. Or a file (``.csv`` with
            empty or ``NA`` cells, ``.npy`` or ``.h5ad`` with NaN) or an ``anndata.AnnData``, read by
            :func:`pyro_vae.data.read_missing` (every column, the AnnData's ``X``; call it yourself
            to choose columns or a layer).
        mask: boolean, ``x``'s shape, True where observed; by default True wherever ``x`` is not NaN.
        num_particles: ``S`` draws of ``z`` per point.
        num_samples: completions drawn per point (0 for the mean alone).
        covariates, plate, global_values: as for :func:`pyro_vae.log_likelihood`.
        seed: seeds every draw.
        max_values: refuse, before any work, draws of more numbers than this in all, and particles
            of one point holding more.

    Returns: an :class:`Imputation`.

    Length: checks every argument before any draw, then one pass over chunks of rows.
    """
    positive_int(num_particles, "num_particles")
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 0:
        raise ValueError(f"num_samples must be an integer >= 0, got {num_samples!r}.")
    x, mask = _values_and_mask(x, mask)
    program = as_program(model, guide, plate=plate)
    if guide is None and program.exact_guide is not None:  # a linear-Gaussian VAE: draw from p(z | x_obs)
        program = program.replace(guide=program.exact_guide, guide_reads_mask=True)
    bound = bind(program, x, covariates=covariates, plate=plate, global_values=global_values, mask=mask)
    program, data, sites = bound.program, bound.data, bound.sites
    if sites.enumerated:
        raise ValueError(
            f"impute does not sum out enumerated sites ({list(sites.enumerated)}); impute with a program that samples them."
        )
    if len(sites.generated) != 1:
        raise ValueError(f"impute fills the one observed site read from x; this program's are {list(sites.generated)}.")
    name = sites.x_site
    if sites.sources and "x" not in sites.sources.get(name, ()):
        raise ValueError(
            f"impute fills missing entries of x, but no observed site reads x (the model observes {name!r} given x): "
            "a conditional model's inputs are not imputed."
        )
    one_row = data.rows(slice(0, 1))
    check_output_size(program, one_row, num_particles, max_values)  # the particles of one point at once
    check_output_size(program, one_row, max(1, num_samples) * len(data), max_values)  # the draws returned
    step = max(1, _DRAWS_PER_CHUNK // num_particles)
    means, draws, sizes = [], [], []
    with isolated(seed), pyro.validation_enabled(False):
        for start in range(0, len(data), step):
            rows = torch.arange(start, min(start + step, len(data)))
            chunk = data.rows(rows)
            weights, model_trace = point_weights(
                program, chunk, num_particles, sites, indices=rows, num_data=len(data), with_trace=True
            )
            normalised = torch.softmax(weights.joint.double(), dim=0)  # (S, B)
            site = model_trace.nodes[name]
            completions = site_values({**site, "value": site["fn"].mean}, sites, program.plate)  # (S, B, D)
            mean = torch.einsum("sb,sb...->b...", normalised.to(completions.dtype), completions)
            means.append(torch.where(chunk.mask, chunk.x, mean.reshape(chunk.x.shape)))  # x's shape (obs=x.reshape)
            sizes.append(1.0 / normalised.pow(2).sum(0))
            chosen = [torch.multinomial(normalised.T.float(), 1).squeeze(-1) for _ in range(num_samples)]
            picked = []
            for particles in chosen:
                sample = site_values({**site, "value": site["fn"].sample()}, sites, program.plate)  # (S, B, D)
                one = sample[particles, torch.arange(len(rows))]
                picked.append(torch.where(chunk.mask, chunk.x, one.reshape(chunk.x.shape)))
            draws.append(torch.stack(picked) if picked else chunk.x.new_zeros(0, *chunk.x.shape))
    return Imputation(
        mean=torch.cat(means),
        draws=torch.cat(draws, dim=1),
        mask=data.mask,
        effective_sample_size=torch.cat(sizes),
        num_particles=num_particles,
        site=name,
    )


def _values_and_mask(x: Any, mask: Any) -> tuple[Any, Any]:
    """``x`` read from a file or AnnData where it names one, and the mask: given, or where ``x`` is not NaN."""
    if is_data_source(x):
        x, found = read_missing(x)
        return x, found if mask is None else mask
    if isinstance(x, Split) and x.mask is not None:  # a split of a table read with missing entries
        return x, x.mask if mask is None else mask
    if mask is None:
        raw = x.x if isinstance(x, Split) else x
        values = torch.as_tensor(np.asarray(raw) if not torch.is_tensor(raw) else raw)
        if not values.is_floating_point() or not bool(torch.isnan(values).any()):
            raise ValueError(
                "impute needs to know what is missing: pass mask= (True where x was observed) or x with NaN "
                "where entries are missing."
            )
        mask = ~torch.isnan(values)
    return x, mask
