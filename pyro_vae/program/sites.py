"""The structure of a Pyro program, read from traces: which sites are observed, local or global,
where the data plate is, and each site's log-density per data point.

:func:`discover` reads it from one run of the guide and the model (replayed against the guide)
on a couple of rows; :func:`per_point` and :func:`site_values` reduce any traced site to the
``(particles, data points)`` layout every tool works in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyro
import torch
from pyro.poutine.util import site_is_subsample

from .dependencies import ancestors, latent_parents, observed_sources


@dataclass(frozen=True)
class Sites:
    """The structure of a program, read from one trace of its guide and model.

    Attributes:
        nesting: number of plate dimensions the program uses (at least 1).
        data_dim: the (negative) dimension of the data plate.
        observed: the model's observed sites inside the data plate.
        local: the guide's latent sites inside the data plate.
        globals: latent sites outside the data plate (guide and model).
        event_shapes: per site, the event shape of its distribution.
        discrete: per observed site, whether its distribution is a mass function.
        model_parents: per local latent and observed site, the latent sites its distribution in
            the model depends on directly (``p(z1 | z2)`` gives ``{"z1": ("z2",)}``).
        guide_parents: per local latent, the latent sites its distribution in the guide depends on.
        enumerated: local latent sites summed out exactly rather than sampled: discrete sites the
            guide marks for parallel enumeration (``config_enumerate``), and discrete sites of the
            model marked so that the guide does not sample.
        discrete_latent: local latent sites with a discrete support (enumerated or not).
        dependencies_known: ``False`` when provenance tracking could not read the dependencies;
            every latent is then taken to depend on every other one.
        sources: per observed site, the arguments its data are read from (``"x"``, covariate
            names); empty when provenance tracking could not follow the program.
    """

    nesting: int
    data_dim: int
    observed: tuple[str, ...]
    local: tuple[str, ...]
    globals: tuple[str, ...]
    event_shapes: dict[str, torch.Size]
    discrete: dict[str, bool]
    model_parents: dict[str, tuple[str, ...]] = field(default_factory=dict)
    guide_parents: dict[str, tuple[str, ...]] = field(default_factory=dict)
    enumerated: tuple[str, ...] = ()
    discrete_latent: tuple[str, ...] = ()
    dependencies_known: bool = True
    sources: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def generated(self) -> tuple[str, ...]:
        """The observed sites generation draws: those read from ``x``; where no site is (a CVAE
        observing ``y`` given ``x``), or their sources are unknown, every observed site.

        An observed site read only from covariates (Pyro's ``pyro.sample("y", ..., obs=ys)`` beside
        the image) keeps the value the caller passes: generating with ``ys=one_hot(7, 10)`` draws sevens.
        """
        from_x = tuple(name for name in self.observed if "x" in self.sources.get(name, ()))
        return from_x or self.observed

    @property
    def x_site(self) -> str:
        """The observed site the tools call ``x`` (``PredictiveSamples.x``): the first of :attr:`generated`."""
        return self.generated[0]

    @property
    def particle_dim(self) -> int:
        return -(self.nesting + 1)

    @property
    def enum_dim(self) -> int:
        """The first dimension enumeration may use: left of the particle dimension."""
        return -(self.nesting + 2)

    def latent(self, site: str | None, *, tool: str | None = None) -> str:
        """The continuous local latent site a tool works on: ``site`` or the only one.

        A discrete site is refused by name (``tool`` names the tool in the message): the tools
        that choose a site work on continuous codes.
        """
        continuous = [name for name in self.local if name not in self.discrete_latent]
        if site is not None:
            if site not in self.local and site not in self.enumerated:
                raise ValueError(
                    f"{site!r} is not a local latent site of this program; its local latents are {list(self.local)}."
                )
            if site in self.discrete_latent:
                raise ValueError(
                    f"The latent site {site!r} is discrete; {tool or 'this tool'} works on continuous latent "
                    f"sites ({continuous or 'this program has none'})."
                )
            return site
        if len(continuous) != 1:
            raise ValueError(
                f"This program has continuous local latent sites {continuous}; pass site= to choose one."
                if continuous
                else f"This program has no continuous local latent site; {tool or 'this tool'} needs one."
            )
        return continuous[0]

    def refuse_model_enumeration(self, tool: str) -> None:
        """Refuse a tool that draws from the posterior when the model sums out sites the guide does
        not sample: their posterior ``p(y | z, x)`` is not drawn (the model would draw ``p(y)``)."""
        summed = [name for name in self.enumerated if name not in self.local]
        if summed:
            raise ValueError(
                f"The model sums out {summed} (marked for enumeration, not sampled by the guide); {tool} draws "
                "from the posterior, which for those sites is p(site | z, x), not computed here. Sample them in the "
                "guide instead (config_enumerate on the guide still sums them in training and log_likelihood)."
            )

    def prior_is_marginal(self, site: str) -> bool:
        """Whether the model's ``fn`` at ``site`` is its marginal ``p(z_k)`` (no latent parents)."""
        return not self.model_parents.get(site, ())

    def guide_is_marginal(self, site: str) -> bool:
        """Whether the guide's ``fn`` at ``site`` is its marginal ``q(z_k | x)`` (no latent parents)."""
        return not self.guide_parents.get(site, ())

    def refuse_shared_ancestors(self, site: str, tool: str) -> None:
        """Refuse to condition on ``site`` alone when its ancestors in the model act on other sites.

        Decoding a code of ``site`` draws the rest of the model given it. The latents ``site``
        depends on are then drawn from their prior, independent of the code: right only when
        nothing but ``site`` (and its ancestors) depends on them.
        """
        above = ancestors(self.model_parents, site)
        for name, parents in self.model_parents.items():
            if name == site or name in above:
                continue
            shared = sorted(set(parents) & above)
            if shared:
                raise ValueError(
                    f"{tool} conditions on {site!r} alone, but {name!r} depends on {shared}, which {site!r} "
                    f"depends on too: drawing {shared} from the prior independently of {site!r} would give the "
                    f"wrong distribution of {name!r}. Use a site none of whose ancestors act elsewhere, or "
                    "prior_predictive for ancestral draws of every site."
                )


def per_point(site: dict, sites: Sites, plate: str, num_particles: int, batch: int) -> torch.Tensor:
    """``site``'s log-density summed to shape ``(S, B)`` (inside the data plate) or ``(S,)``.

    Scales (KL warm-up, minibatch factors) are ignored; masks (``poutine.mask``) are applied.
    """
    log_prob = site["fn"].log_prob(site["value"])
    if site.get("mask") is not None:
        log_prob = torch.where(site["mask"], log_prob, torch.zeros_like(log_prob))
    if log_prob.ndim > sites.nesting + 1:
        raise ValueError(
            f"Site {site['name']!r} has log_prob of shape {tuple(log_prob.shape)}, with batch dimensions that "
            "no pyro.plate declares; declare them with a plate or make them event dimensions with .to_event()."
        )
    return to_points(log_prob, sites, in_plate(site, plate), num_particles, batch)


def to_points(values: torch.Tensor, sites: Sites, local: bool, num_particles: int, batch: int) -> torch.Tensor:
    """A per-site quantity with the program's batch layout (particles first, then its plates) summed
    over every plate but the data plate: shape ``(S, B)`` for a ``local`` site, ``(S,)`` otherwise."""
    rank = sites.nesting + 1
    values = values.reshape((1,) * (rank - values.ndim) + tuple(values.shape))
    keep = [0, rank + sites.data_dim] if local else [0]
    other = [d for d in range(rank) if d not in keep]
    if other:
        values = values.sum(other)
    return values.expand((num_particles, batch) if local else (num_particles,))


def site_values(site: dict, sites: Sites, plate: str, *, particles: bool = True) -> torch.Tensor:
    """A site's value with the particle dimension first (with ``particles``) and, for local sites,
    the data dimension next.

    Other plate dimensions of size 1 are dropped; event dimensions follow.
    """
    fn = site["fn"]
    # An observed value may be smaller than its distribution's batch (labels given once for every particle).
    value = site["value"].expand(torch.broadcast_shapes(site["value"].shape, fn.batch_shape + fn.event_shape))
    event = len(fn.event_shape)
    batch = value.shape[: value.ndim - event]
    rank = sites.nesting + (1 if particles else 0)
    batch = (1,) * (rank - len(batch)) + tuple(batch)
    value = value.reshape(*batch, *value.shape[value.ndim - event :])
    keep = ([0] if particles else []) + ([rank + sites.data_dim] if in_plate(site, plate) else [])
    drop = [d for d in range(rank) if d not in keep and value.shape[d] == 1]
    for d in sorted(drop, reverse=True):
        value = value.squeeze(d)
    return value


def in_plate(site: dict, plate: str) -> bool:
    return any(frame.name == plate for frame in site["cond_indep_stack"])


def discover(program, rows) -> Sites:
    """The :class:`Sites` of ``program`` (a :class:`~pyro_vae.program.Program`) on a few ``rows``.

    Length: one traced run of the guide and the model, read site kind by site kind (data, observed, latent,
    enumerated, global) into one Sites, each with the error that names what is wrong.
    """
    guide = program.optional_guide or (lambda *args, **kwargs: None)
    with torch.no_grad(), pyro.validation_enabled(False):
        guide_trace, model_trace = program.traces(
            rows, None, indices=torch.arange(len(rows)), num_data=len(rows), guide=guide
        )
    plate = program.plate
    frames, plates_seen = [], set()
    for trace in (guide_trace, model_trace):
        for site in trace.nodes.values():
            if site["type"] == "sample":
                for frame in site["cond_indep_stack"]:
                    plates_seen.add(frame.name)
                    if frame.vectorized and frame.dim is not None:
                        frames.append(frame)
    data_frames = [f for f in frames if f.name == plate]
    if not data_frames:
        raise ValueError(
            f"The model has no pyro.plate named {plate!r} around its observed sites (plates found: "
            f"{sorted(plates_seen) or 'none'}). Put the per-point sites inside pyro.plate({plate!r}, N), "
            "or pass plate='<name>' to the tool."
        )
    nesting = max(1, max(-f.dim for f in frames))
    data_dim = data_frames[0].dim

    def samples(trace):
        return {n: s for n, s in trace.nodes.items() if s["type"] == "sample" and not site_is_subsample(s)}

    model_sites, guide_sites = samples(model_trace), samples(guide_trace)
    # pyro.deterministic sites (and obs_mask's joined value) are recorded as observed; they are not data.
    observed = tuple(
        n
        for n, s in model_sites.items()
        if s["is_observed"] and in_plate(s, plate) and not s["infer"].get("_deterministic")
    )
    if not observed:
        raise ValueError(
            f"The model observes no site inside the plate {plate!r}: pass the data as obs= of a sample site there."
        )
    # The guide's latents are the ones tools draw from q; without a guide, the model's own.
    latent_source = guide_sites if program.optional_guide is not None else model_sites
    local = tuple(n for n, s in latent_source.items() if not s["is_observed"] and in_plate(s, plate))
    globals_ = tuple(
        n
        for n, s in {**guide_sites, **model_sites}.items()
        if not in_plate(s, plate) and (not s["is_observed"] or n in guide_sites)
    )
    # Discrete sites the model marks for enumeration and the guide does not sample are summed out.
    model_enumerated = tuple(
        n
        for n, s in model_sites.items()
        if not s["is_observed"] and n not in guide_sites and _enumerated(s) and in_plate(s, plate)
    )
    guide_enumerated = tuple(n for n in local if _enumerated(guide_sites[n])) if program.optional_guide else ()
    if program.optional_guide is not None:
        unguided = [
            n
            for n, s in model_sites.items()
            if not s["is_observed"] and n not in guide_sites and n not in model_enumerated
        ]
        if unguided:
            raise ValueError(
                f"The model's latent site(s) {unguided} are not sampled by the guide; every latent "
                "of the model needs a distribution in the guide."
            )
        auxiliary = [n for n in guide_sites if n not in model_sites]
        if auxiliary:
            raise ValueError(
                f"The guide samples {auxiliary}, which the model does not have; importance weights "
                "need the guide's sites to be the model's latents."
            )
    batch = len(rows)
    for name in observed:
        value = model_sites[name]["value"]
        fn = model_sites[name]["fn"]
        size = (
            value.shape[value.ndim - len(fn.event_shape) + data_dim]
            if value.ndim - len(fn.event_shape) >= -data_dim
            else 1
        )
        if size != batch:
            raise ValueError(
                f"The plate {plate!r} runs over {size} points at site {name!r}, but the batch has "
                f"{batch} rows: the data plate must run over the rows of x."
            )
    all_sites = {**model_sites, **guide_sites}
    enumerated = guide_enumerated + model_enumerated
    for name in enumerated:
        outside = [f.name for f in all_sites[name]["cond_indep_stack"] if f.vectorized and f.name != plate]
        if outside:
            raise ValueError(
                f"The enumerated site {name!r} lies in the plate(s) {outside} as well as {plate!r}; pyro_vae sums "
                f"out discrete latents with one value per data point, inside {plate!r} only."
            )
    latents = local + model_enumerated + globals_
    indices, num_data = torch.arange(len(rows)), len(rows)
    model_parents, known_model = latent_parents(
        program.model,
        (rows.x,),
        program.arguments(program.model, rows, indices, num_data),
        local + model_enumerated + observed,
        latents,
    )
    guide_parents, known_guide = latent_parents(
        program.optional_guide,
        (rows.x,),
        program.arguments(guide, rows, indices, num_data),
        local,
        latents,
    )
    sources = observed_sources(
        program.model, rows.x, program.arguments(program.model, rows, indices, num_data), observed
    )
    return Sites(
        sources=sources or {},
        nesting=nesting,
        data_dim=data_dim,
        observed=observed,
        local=local,
        globals=globals_,
        event_shapes={n: s["fn"].event_shape for n, s in all_sites.items()},
        discrete={n: bool(getattr(model_sites[n]["fn"].support, "is_discrete", False)) for n in observed},
        model_parents=model_parents,
        guide_parents=guide_parents if program.optional_guide is not None else {},
        enumerated=enumerated,
        discrete_latent=tuple(n for n in local + model_enumerated if _is_discrete(all_sites[n]["fn"])),
        dependencies_known=known_model and known_guide,
    )


def _is_discrete(fn) -> bool:
    return bool(getattr(fn.support, "is_discrete", False))


def _enumerated(site: dict) -> bool:
    return site["infer"].get("enumerate") == "parallel" and _is_discrete(site["fn"])
