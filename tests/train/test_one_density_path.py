"""One density path: a VAE's Pyro programs and its ELBO from the parts read ``p(z)``, ``q(z|x)`` and
``p(x|z)`` from the same three calls, so a subclass of any registered prior, guide family or
likelihood that overrides one of its documented hooks changes both paths alike.

Each case overrides one hook so that it returns another distribution (the prior and the guide pushed
through an affine map, the likelihood at rescaled and shifted decoder outputs) and holds the direct objective to
Pyro's ``Trace_ELBO`` and ``TraceMeanField_ELBO`` (loss and gradients on one random stream) and the
direct ``log p(x)`` to the traced one. A failure here means training or evaluation optimises or
reports another model than the programs define.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions.transforms import AffineTransform

import pyro_vae
from helpers.vae_data import LIKELIHOOD_KWARGS, LIKELIHOOD_NAMES, rows_in_support
from pyro_vae.objectives import DirectTraceELBO, make_objective
from pyro_vae.vae import model as vae_module

D, L, B, N = 6, 3, 5, 40
PRIOR_KWARGS = {"mixture": {"num_components": 3}, "vamp": {"num_components": 3}}
GUIDES = [name for name in pyro_vae.vae.guides.GUIDES]
PRIORS = [name for name in pyro_vae.vae.priors.PRIORS]


def _stretched(distribution):
    return dist.TransformedDistribution(distribution, [AffineTransform(0.3, 1.5, event_dim=1)])


def _prior_subclass(base, hook):
    if hook == "distribution":
        return type("Stretched", (base,), {"distribution": lambda self: _stretched(base.distribution(self))})
    return type("Stretched", (base,), {"forward": lambda self: _stretched(base.forward(self))})


def _guide_subclass(base, hook):
    if hook == "distribution":
        body = {"distribution": lambda self, loc, scale: _stretched(base.distribution(self, loc, scale))}
    else:
        body = {"forward": lambda self, loc, scale: _stretched(base.forward(self, loc, scale))}
    return type("Stretched", (base,), body)


def _likelihood_subclass(base, hook):
    def shifted(method):
        def hook_fn(self, raw, *args, **kwargs):
            return method(self, 1.3 * raw + 0.25, *args, **kwargs)

        return hook_fn

    return type("Shifted", (base,), {hook: shifted(getattr(base, hook))})


def _loss_and_grads(objective, vae, x):
    pyro.clear_param_store()
    torch.manual_seed(7)
    with pyro.validation_enabled(False):
        loss = objective.differentiable_loss(vae.model, vae.guide, x, indices=torch.arange(B), num_data=N)
    return loss.detach(), torch.autograd.grad(loss, list(vae.parameters()), allow_unused=True)


def _assert_one_path(vae, baseline_loss):
    assert vae.computes_own_elbo
    x = rows_in_support(vae, B, seed=3)
    for elbo in ("trace", "meanfield"):
        traced = _loss_and_grads(make_objective(elbo, 2), vae, x)
        direct = _loss_and_grads(DirectTraceELBO(vae, 2, analytic_kl=elbo == "meanfield"), vae, x)
        assert torch.isfinite(traced[0])
        assert torch.allclose(direct[0], traced[0], rtol=1e-5, atol=1e-4), (elbo, direct[0], traced[0])
        for a, b in zip(traced[1], direct[1]):
            assert (a is None) == (b is None)
            if a is not None:
                assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * (1 + a.abs().max()))
    if baseline_loss is not None:  # the override took effect: another objective than the parent's
        assert not torch.allclose(_loss_and_grads(make_objective("trace", 2), vae, x)[0], baseline_loss)
    # log p(x): importance weights from the parts against the traced programs', same seed.
    direct = pyro_vae.log_likelihood(vae, x, num_particles=16, seed=5)
    traced = pyro_vae.log_likelihood(vae.as_program(direct=False), x, num_particles=16, seed=5)
    assert torch.allclose(direct.log_px, traced.log_px, atol=1e-4)
    return x


def _baseline(vae_kwargs):
    torch.manual_seed(0)
    vae = pyro_vae.VAE(D, L, hidden_sizes=(8,), **vae_kwargs)
    x = rows_in_support(vae, B, seed=3)
    return _loss_and_grads(make_objective("trace", 2), vae, x)[0], vae.state_dict()


@pytest.mark.parametrize("hook", ["distribution", "forward"])
@pytest.mark.parametrize("name", PRIORS)
def test_an_overridden_prior_hook_reaches_both_paths(name, hook):
    base = pyro_vae.vae.priors.PRIORS[name]
    baseline, state = _baseline({"prior": name, "prior_kwargs": PRIOR_KWARGS.get(name)})
    torch.manual_seed(0)
    vae = pyro_vae.VAE(D, L, hidden_sizes=(8,), prior=_prior_subclass(base, hook)(L, **PRIOR_KWARGS.get(name, {})))
    vae.load_state_dict(state)
    _assert_one_path(vae, baseline)


@pytest.mark.parametrize("hook", ["distribution", "forward"])
@pytest.mark.parametrize("name", GUIDES)
def test_an_overridden_guide_family_hook_reaches_both_paths(name, hook):
    base = pyro_vae.vae.guides.GUIDES[name]
    baseline, state = _baseline({"guide": name})
    torch.manual_seed(0)
    vae = pyro_vae.VAE(D, L, hidden_sizes=(8,), guide=_guide_subclass(base, hook)(L))
    vae.load_state_dict(state)
    _assert_one_path(vae, baseline)


def _likelihood_hooks():
    for name in LIKELIHOOD_NAMES:
        cls = pyro_vae.LIKELIHOODS[name]
        for hook in ("forward", "distribution", "density"):
            if hook in dir(cls) and not getattr(getattr(cls, hook), "__isabstractmethod__", False):
                if hook == "density" and not issubclass(cls, pyro_vae.likelihoods.DensityLikelihood):
                    continue
                yield name, hook


@pytest.mark.parametrize("name,hook", list(_likelihood_hooks()))
def test_an_overridden_likelihood_hook_reaches_both_paths(name, hook):
    kwargs = LIKELIHOOD_KWARGS.get(name, {})
    baseline, state = _baseline({"likelihood": name, "likelihood_kwargs": kwargs or None})
    torch.manual_seed(0)
    likelihood = _likelihood_subclass(pyro_vae.LIKELIHOODS[name], hook)(**kwargs)
    vae = pyro_vae.VAE(D, L, hidden_sizes=(8,), likelihood=likelihood)
    vae.load_state_dict(state)
    _assert_one_path(vae, baseline)


def test_fit_without_the_direct_path_validates_and_evaluates_through_pyro(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the ELBO from the parts was used")

    monkeypatch.setattr(vae_module, "importance_log_weights", refuse)
    torch.manual_seed(0)
    x = (torch.rand(40, D) < 0.5).float()
    vae = pyro_vae.VAE(D, L, hidden_sizes=(8,))
    history = pyro_vae.fit(vae, x[:30], val=x[30:], epochs=2, batch_size=10, direct=False, progress=False)
    assert len(history.rows) == 2 and all(torch.isfinite(torch.tensor(r["val_elbo"])) for r in history.rows)
    assert vae.as_program(direct=False).direct_weights is None
    with pytest.raises(AssertionError, match="from the parts"):
        pyro_vae.fit(vae, x[:30], val=x[30:], epochs=1, batch_size=10, progress=False)
