"""A VAE's importance weights computed from its parts equal the traced programs', draw for draw.

``VAE.as_program()`` hands importance sampling ``direct_weights`` (``log p(x|z) + log p(z) -
log q(z|x)`` without Pyro's traces); these tests hold them to the weights the tools compute from
the traces of the same model and guide, on the same random stream, for every likelihood, prior
and guide family, with covariates, masks and size factors, and check that a program whose model
or guide is replaced, or a VAE that rewrites its programs, goes through the traces.
"""

from __future__ import annotations

import pyro
import pytest
import torch

import pyro_vae
from helpers.vae_data import LIKELIHOOD_KWARGS, LIKELIHOOD_NAMES, rows_in_support
from pyro_vae.program import as_program
from pyro_vae.program.weights import point_weights

D, L, B = 6, 3, 7


def _weights(program, data, particles, seed=11):
    torch.manual_seed(seed)
    with torch.no_grad(), pyro.validation_enabled(False):
        return point_weights(
            program, data, particles, program.sites(data), indices=torch.arange(len(data)), num_data=len(data)
        )


def _assert_same_weights(vae, x, covariates=None, mask=None, particles=(1, 4)):
    program = vae.as_program()
    assert program.direct_weights is not None
    traced = program.replace(direct_weights=None)
    data = program.data(x, covariates, mask=mask)
    for num in particles:
        direct, reference = _weights(program, data, num), _weights(traced, data, num)
        assert direct.joint.shape == reference.joint.shape == (num, len(data))
        assert torch.isfinite(reference.joint).all()
        assert torch.allclose(direct.joint, reference.joint, rtol=1e-5, atol=1e-4), (direct.joint, reference.joint)
        assert torch.equal(direct.elbo, direct.joint) and torch.equal(direct.per_site["x"], direct.joint)


def _data_for(vae, rows=B, seed=0, y=None):
    return rows_in_support(vae, rows, seed, y)


@pytest.mark.parametrize("name", LIKELIHOOD_NAMES)
def test_every_likelihood_matches_the_traced_weights(name):
    torch.manual_seed(0)
    vae = pyro_vae.VAE(D, L, hidden_sizes=(8,), likelihood=name, likelihood_kwargs=LIKELIHOOD_KWARGS.get(name))
    _assert_same_weights(vae, _data_for(vae))


@pytest.mark.parametrize("prior", ["normal", "learned_normal", "mixture", "vamp", "flow"])
@pytest.mark.parametrize("guide", ["normal", "iaf"])
def test_every_prior_and_guide_family_match_the_traced_weights(prior, guide):
    torch.manual_seed(1)
    prior_kwargs = {"num_components": 4} if prior in ("vamp", "mixture") else None
    vae = pyro_vae.VAE(D, L, hidden_sizes=(8,), prior=prior, prior_kwargs=prior_kwargs, guide=guide)
    _assert_same_weights(vae, _data_for(vae))


def test_covariates_masks_and_size_factors_match_the_traced_weights():
    torch.manual_seed(2)
    vae = pyro_vae.VAE(D, L, hidden_sizes=(8,), covariate_dim=2, missing=True)
    y = torch.randn(B, 2)
    x = _data_for(vae, y=y)
    mask = torch.rand(B, D) < 0.7
    mask[:, 0] = True
    _assert_same_weights(vae, torch.where(mask, x, torch.nan), {"y": y}, mask=mask)
    counts = pyro_vae.VAE(
        D, L, hidden_sizes=(8,), likelihood="negative_binomial", likelihood_kwargs={"size_factors": True}
    )
    x = _data_for(counts)
    _assert_same_weights(counts, x, {"size_factor": torch.linspace(5.0, 30.0, B)})
    _assert_same_weights(counts, x)  # size factors from the rows' totals


def test_log_likelihood_is_the_same_estimate_either_way():
    torch.manual_seed(3)
    vae = pyro_vae.VAE(D, L, hidden_sizes=(8,))
    x = _data_for(vae)
    direct = pyro_vae.log_likelihood(vae, x, num_particles=50, seed=4)
    traced = pyro_vae.log_likelihood(vae.as_program().replace(direct_weights=None), x, num_particles=50, seed=4)
    assert torch.allclose(direct.log_px, traced.log_px, atol=1e-4)
    assert torch.allclose(direct.elbo, traced.elbo, atol=1e-4)
    assert torch.allclose(direct.pareto_k, traced.pareto_k, atol=1e-3)


class _OwnGuide(pyro_vae.VAE):
    def guide(self, x, y=None, size_factor=None, **kwargs):
        return super().guide(x, y, size_factor, **kwargs)


def test_programs_that_are_not_the_vaes_own_are_traced():
    vae = pyro_vae.VAE(D, L, hidden_sizes=(8,))
    assert vae.as_program().direct_weights is not None
    assert as_program(vae, guide=vae.guide).direct_weights is None  # a guide passed in: not the parts'
    assert vae.as_program().replace(model=vae.model).direct_weights is None
    assert vae.as_program().replace(plate="data").direct_weights is not None
    assert _OwnGuide(D, L, hidden_sizes=(8,)).as_program().direct_weights is None
    assert pyro_vae.HierarchicalVAE(D, 3, bottom_dim=2, hidden_sizes=(8,)).as_program().direct_weights is None
