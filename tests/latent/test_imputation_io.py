"""Multiple imputation as users need it: missing entries read from a CSV file's empty cells or from
NaN (arrays, AnnData), and the imputed draws exported to ArviZ and to AnnData layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pyro_vae
from pyro_vae._util.arviz_compat import arviz_line
from pyro_vae.data import read_missing

D, L, N = 4, 2, 12


@pytest.fixture
def data():
    torch.manual_seed(0)
    x = torch.randn(N, D)
    mask = torch.rand(N, D) > 0.3
    mask[:, 0] |= ~mask.any(0)[0]  # every feature observed somewhere
    mask[0] = True
    return x, mask


def _vae():
    torch.manual_seed(1)
    return pyro_vae.VAE(D, L, likelihood="normal", hidden_sizes=(8,), missing=True)


def _csv(path, x, mask, marker):
    lines = ["a,b,c,d"]
    for row, seen in zip(x.tolist(), mask.tolist()):
        lines.append(",".join(f"{v!r}" if s else marker for v, s in zip(row, seen)))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("marker", ["", "NA", "NaN", "null"])
def test_a_csv_files_empty_and_na_cells_are_read_as_missing(tmp_path, data, marker):
    x, mask = data
    read, found = read_missing(_csv(tmp_path / "t.csv", x, mask, marker))
    assert torch.equal(found, mask)
    assert torch.equal(read[mask], x[mask].float()) and bool(torch.isnan(read[~mask]).all())


def test_the_table_reader_still_refuses_missing_cells_outside_read_missing(tmp_path, data):
    x, mask = data
    path = _csv(tmp_path / "t.csv", x, mask, "NA")
    with pytest.raises(ValueError, match="not a number|missing"):
        pyro_vae.data.load(str(path))


def test_inf_is_not_a_missing_value(tmp_path):
    (tmp_path / "t.csv").write_text("1,2\n3,inf\n5,\n")
    with pytest.raises(ValueError, match="inf"):
        read_missing(tmp_path / "t.csv")


def test_impute_reads_files_and_nan_as_missing_and_gives_what_an_explicit_mask_gives(tmp_path, data):
    x, mask = data
    vae = _vae()
    reference = pyro_vae.impute(vae, x, mask=mask, num_particles=50, num_samples=3, seed=4)
    holes = torch.where(mask, x, torch.full_like(x, float("nan")))
    np.save(tmp_path / "t.npy", holes.numpy())
    for given in (holes, holes.numpy(), str(tmp_path / "t.npy"), _csv(tmp_path / "t.csv", x, mask, "")):
        imputed = pyro_vae.impute(vae, given, num_particles=50, num_samples=3, seed=4)
        assert torch.equal(imputed.mask, mask)
        assert torch.allclose(imputed.mean, reference.mean, atol=1e-6)
        assert torch.allclose(imputed.draws, reference.draws, atol=1e-6)
    with pytest.raises(ValueError, match="what is missing"):
        pyro_vae.impute(vae, x, num_particles=5)


def test_imputed_draws_export_to_arviz(data):
    x, mask = data
    imputed = pyro_vae.impute(_vae(), x, mask=mask, num_particles=20, num_samples=5)
    exported = imputed.to_inference_data()
    draws = np.asarray(exported["posterior_predictive"]["x"])
    assert draws.shape == (1, 5, N, D)
    np.testing.assert_allclose(draws[0], imputed.draws.numpy())
    observed = np.asarray(exported["observed_data"]["x"])
    assert np.isnan(observed[~mask.numpy()]).all()
    np.testing.assert_allclose(observed[mask.numpy()], x[mask].numpy(), rtol=1e-6)
    assert np.array_equal(np.asarray(exported["constant_data"]["mask"]), mask.numpy())
    if arviz_line() == 0:  # ArviZ reads it: the summary of the draws
        import arviz as az

        assert az.summary(exported, group="posterior_predictive", kind="stats").shape[0] == N * D
    with pytest.raises(ValueError, match="num_samples"):
        pyro_vae.impute(_vae(), x, mask=mask, num_particles=5, num_samples=0).to_inference_data()


def test_imputations_go_to_anndata_layers_of_a_copy(data):
    anndata = pytest.importorskip("anndata")
    x, mask = data
    holes = torch.where(mask, x, torch.full_like(x, float("nan"))).numpy()
    adata = anndata.AnnData(X=holes.copy())
    imputed = pyro_vae.impute(_vae(), adata, num_particles=20, num_samples=4)
    assert torch.equal(imputed.mask, mask)
    out = imputed.to_anndata(adata)
    # (anndata >= 0.13 lists X among the layers, under the key None)
    assert out is not adata and [k for k in adata.layers.keys() if k is not None] == []
    assert np.array_equal(adata.X, holes, equal_nan=True)
    np.testing.assert_allclose(out.layers["imputed"][mask.numpy()], x[mask].numpy(), rtol=1e-6)
    assert not np.isnan(out.layers["imputed"]).any()
    sd = out.layers["imputed_sd"]
    assert (sd[mask.numpy()] == 0).all() and (sd[~mask.numpy()] > 0).all()
    np.testing.assert_allclose(sd, imputed.draws.std(0, correction=0).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="already has"):
        imputed.to_anndata(out)
    with pytest.raises(ValueError, match="shape"):
        imputed.to_anndata(anndata.AnnData(X=np.zeros((N + 1, D))))
    fresh = imputed.to_anndata(layer="filled")
    assert fresh.shape == (N, D) and "filled_sd" in fresh.layers


def test_the_command_line_imputes_a_tables_empty_cells_with_a_trained_run(tmp_path, capsys):
    from pyro_vae.cli import main

    torch.manual_seed(2)
    x = torch.randn(40, 3) @ torch.randn(3, D)
    complete = tmp_path / "complete.csv"
    complete.write_text("a,b,c,d\n" + "".join(",".join(repr(v) for v in row) + "\n" for row in x.tolist()))
    run = tmp_path / "run"
    assert main(["train", "--data", str(complete), "--likelihood", "normal", "--latent-dim", "2", "--epochs", "2",
                 "--hidden", "8", "--out", str(run)]) == 0  # fmt: skip
    mask = torch.rand(10, D) > 0.3
    holes = _csv(tmp_path / "holes.csv", x[:10], mask, "")
    assert main(["impute", str(run), "--data", str(holes), "--num-particles", "20", "--num-samples", "3"]) == 0
    out = tmp_path / "holes-imputed.csv"
    assert out.read_text().splitlines()[0] == "a,b,c,d"
    means = np.loadtxt(out, delimiter=",", skiprows=1)
    np.testing.assert_allclose(means[mask.numpy()], x[:10][mask].numpy(), rtol=1e-5)
    assert np.isfinite(means).all()
    assert np.load(tmp_path / "holes-imputed-draws.npy").shape == (3, 10, D)
    assert "missing entries of 10 rows imputed" in capsys.readouterr().out
    # The outputs are not replaced without --overwrite; a bad --out is refused before any work.
    assert main(["impute", str(run), "--data", str(holes)]) == 2
    assert main(["impute", str(run), "--data", str(holes), "--out", str(tmp_path / "x.txt")]) == 2


def test_the_export_names_the_programs_own_observed_site():
    import pyro
    import pyro.distributions as dist

    decoder, encoder = torch.nn.Linear(L, D), torch.nn.Linear(D, 2 * L)

    def model(x):
        pyro.module("decoder", decoder)
        with pyro.plate("data"):
            z = pyro.sample("latent", dist.Normal(0.0, 1.0).expand([L]).to_event(1))
            pyro.sample("obs", dist.Normal(decoder(z), 1.0).to_event(1), obs=x)

    def guide(x):
        pyro.module("encoder", encoder)
        with pyro.plate("data"):
            h = encoder(x)
            pyro.sample("latent", dist.Normal(h[..., :L], torch.nn.functional.softplus(h[..., L:]) + 0.1).to_event(1))

    x = torch.randn(N, D)
    x[1:, 0] = float("nan")
    imputed = pyro_vae.impute(model, x, guide=guide, num_particles=10, num_samples=2)
    assert imputed.site == "obs"
    assert np.asarray(imputed.to_inference_data()["posterior_predictive"]["obs"]).shape == (1, 2, N, D)
