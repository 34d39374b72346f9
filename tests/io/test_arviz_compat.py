"""The ArviZ compatibility layer gives one answer whatever ArviZ line is installed, and refuses an
unsupported ArviZ before any work. These run on each line (.ci/run: ArviZ 0.23 on Python 3.11, 1.x
on 3.12 and 3.13)."""

import math

import numpy as np
import pytest
import torch

import pyro_vae
from pyro_vae._util import arviz_compat
from pyro_vae._util.arviz_compat import ElpdEstimate, arviz_line, compare_elpd, pareto_k


def test_the_installed_line_matches_the_interpreter():
    import sys

    assert arviz_line() == (0 if sys.version_info < (3, 12) else 1)


@pytest.mark.parametrize("alpha", [4.0, 2.0, 1.25])
def test_pareto_k_of_pareto_weights_is_one_over_the_tail_index(alpha):
    # w = U^(-1/alpha) has a Pareto tail of index alpha: the PSIS shape is k = 1/alpha.
    g = np.random.default_rng(0)
    log_w = -np.log(g.uniform(size=(40, 4000))) / alpha
    k = pareto_k(log_w)
    assert k.shape == (40,)
    assert abs(float(np.median(k)) - 1 / alpha) < 0.06


def test_pareto_k_without_a_fit_is_infinite_on_both_lines():
    g = np.random.default_rng(1)
    assert np.isinf(pareto_k(g.normal(size=(3, 20)))).all()  # a tail of 4 draws: no fit
    tied = np.repeat(g.normal(size=(2, 4)), 25, axis=1)  # four distinct weights, ties at the threshold
    assert not np.isnan(pareto_k(tied)).any()


def test_compare_keeps_one_layout_and_sign():
    g = np.random.default_rng(2)
    n = 60
    a = g.normal(-100, 3, n)
    b = a - 1.0 + g.normal(0, 0.5, n)
    estimates = {
        name: ElpdEstimate(float(v.sum()), math.sqrt(n * v.var()), v, 100, False) for name, v in (("b", b), ("a", a))
    }
    table = compare_elpd(estimates, method="stacking")
    assert list(table.columns) == list(arviz_compat.COMPARE_COLUMNS)
    assert list(table.index) == ["a", "b"] and list(table["rank"]) == [0, 1]
    assert table.loc["a", "elpd_diff"] == 0.0 and not math.copysign(1, table.loc["a", "elpd_diff"]) < 0
    np.testing.assert_allclose(table.loc["b", "elpd_diff"], a.sum() - b.sum(), rtol=1e-12)  # best minus this one
    np.testing.assert_allclose(table.loc["b", "dse"], math.sqrt(n * np.var(a - b, ddof=0)), rtol=1e-6)
    np.testing.assert_allclose(table["elpd"].to_numpy(), [a.sum(), b.sum()], rtol=1e-12)  # not rounded
    assert table["weight"].sum() == pytest.approx(1.0)


@pytest.mark.parametrize("version", ["0.12.0", "1.0.0", "2.0.1", None])
def test_an_unsupported_arviz_is_refused_before_any_work(monkeypatch, version):
    monkeypatch.setattr(arviz_compat, "_installed_version", lambda: version)
    vae = pyro_vae.VAE(4, 2, hidden_sizes=(4,))
    x = (torch.rand(6, 4, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    calls, guide = [], vae.guide
    monkeypatch.setattr(vae, "guide", lambda *a, **k: calls.append(1) or guide(*a, **k))  # records any run
    for run in (
        lambda: pyro_vae.log_likelihood(vae, x, num_particles=20),
        lambda: pyro_vae.compare({"a": vae, "b": vae}, x, num_particles=20),
        lambda: pyro_vae.to_inference_data(vae, x, num_samples=5),
    ):
        with pytest.raises(ImportError, match=r"arviz >= 0\.17, < 0\.24 on Python 3\.10 and 3\.11; arviz >= 1\.1, < 2"):
            run()
    assert not calls
    # Without the Pareto fit, log_likelihood needs no ArviZ at all.
    assert (
        pyro_vae.log_likelihood(pyro_vae.VAE(4, 2, hidden_sizes=(4,)), x, num_particles=20, psis=False).num_points == 6
    )
