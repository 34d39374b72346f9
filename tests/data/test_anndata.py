"""AnnData in and out: a count layer and obs columns read from a small generated .h5ad, the latent
means written back to obsm in the file's own order, and the choice kept by a run folder."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

import pyro_vae
from pyro_vae.cli import main
from pyro_vae.data.anndata_files import read_h5ad
from pyro_vae.io.anndata_latent import add_latent

anndata = pytest.importorskip("anndata")
sparse = pytest.importorskip("scipy.sparse")

CELLS, GENES = 30, 6


def make_adata(cells=CELLS, batches=("b", "a", "c")):
    rng = np.random.default_rng(0)
    counts = rng.poisson(3.0, size=(cells, GENES)).astype(np.float32)
    obs = pd.DataFrame(
        {
            "batch": pd.Categorical([batches[i % len(batches)] for i in range(cells)]),
            "cell_type": [["T", "B"][i % 2] for i in range(cells)],
            "donor": [[4, 9][(i // 2) % 2] for i in range(cells)],
        },
        index=[f"cell{i}" for i in range(cells)],
    )
    var = pd.DataFrame(index=[f"gene{j}" for j in range(GENES)])
    adata = anndata.AnnData(X=np.log1p(counts), obs=obs, var=var)
    adata.layers["counts"] = sparse.csr_matrix(counts)
    return adata, counts


@pytest.fixture
def h5ad(tmp_path):
    adata, counts = make_adata()
    path = tmp_path / "cells.h5ad"
    adata.write_h5ad(path)
    return path, adata, counts


def test_read_h5ad_takes_the_layer_the_label_and_the_covariates_in_row_order(h5ad):
    path, adata, counts = h5ad
    x, labels, record, y = read_h5ad(path, layer="counts", label="cell_type", covariates=["batch", "donor"])
    assert torch.equal(x, torch.from_numpy(counts))  # the sparse count layer, dense, row for row
    assert labels.tolist() == [0 if t == "B" else 1 for t in adata.obs["cell_type"]]
    assert record["label_classes"] == ["B", "T"] and record["layer"] == "counts"
    assert record["covariates"] == [
        {"column": "batch", "classes": ["a", "b", "c"]},
        {"column": "donor", "classes": [4, 9]},
    ]
    for i in range(CELLS):
        assert y[i, :3].argmax() == "abc".index(adata.obs["batch"].iloc[i])
        assert y[i, 3:].argmax() == [4, 9].index(adata.obs["donor"].iloc[i])
    x_default, *_ = read_h5ad(path)
    assert torch.allclose(x_default, torch.from_numpy(np.log1p(counts)))  # X when no layer is named
    genes, *_ = read_h5ad(path, layer="counts", columns=["gene4", "gene1"])
    assert torch.equal(genes, torch.from_numpy(counts[:, [4, 1]]))


def test_load_splits_an_h5ad_like_a_table_and_keeps_each_cells_covariates(h5ad):
    path, adata, counts = h5ad
    dataset = pyro_vae.data.load(path, layer="counts", covariates=["batch"])
    assert dataset.input_dim == GENES and dataset.columns["layer"] == "counts"
    rows = np.concatenate([s.x.numpy() for s in (dataset.train, dataset.val, dataset.test)])
    assert sorted(map(tuple, rows)) == sorted(map(tuple, counts))  # every cell once, none lost
    for split in (dataset.train, dataset.val, dataset.test):
        for row, code in zip(split.x.numpy(), split.covariates.numpy()):
            i = int(np.argmin(np.abs(counts - row).sum(-1)))
            if (np.abs(counts - row).sum(-1) == 0).sum() == 1:  # a cell identified by its counts
                assert code.argmax() == "abc".index(adata.obs["batch"].iloc[i])


def test_bad_requests_are_refused_by_name(h5ad, tmp_path):
    path, _, _ = h5ad
    with pytest.raises(ValueError, match="no layer 'raw'.*'counts'"):
        pyro_vae.data.load(path, layer="raw")
    with pytest.raises(ValueError, match="obs has no column 'site'"):
        pyro_vae.data.load(path, covariates=["site"])
    with pytest.raises(ValueError, match="not in var_names"):
        pyro_vae.data.load(path, columns=["gene99"])
    with pytest.raises(ValueError, match="layer= names a layer of an AnnData file"):
        pyro_vae.data.load("digits", layer="counts")
    broken = tmp_path / "broken.h5ad"
    broken.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(ValueError, match="not a readable AnnData file"):
        pyro_vae.data.load(broken)
    adata, _ = make_adata()
    adata.obs["batch"] = adata.obs["batch"].astype(object)
    adata.obs.loc["cell3", "batch"] = None
    holed = tmp_path / "holed.h5ad"
    adata.write_h5ad(holed)
    with pytest.raises(ValueError, match="obs column 'batch' has missing values"):
        pyro_vae.data.load(holed, covariates=["batch"])


def test_add_latent_writes_the_posterior_means_of_every_cell_in_file_order(h5ad, tmp_path):
    path, adata, counts = h5ad
    dataset = pyro_vae.data.load(path, layer="counts", covariates=["batch"])
    torch.manual_seed(0)
    vae = pyro_vae.VAE(GENES, 2, hidden_sizes=(8,), likelihood="poisson", covariate_dim=3)
    pyro_vae.fit(vae, dataset.train.x, covariates=dataset.train.covariates_for(), epochs=2, progress=False)
    y = torch.eye(3)[["abc".index(b) for b in adata.obs["batch"]]]
    expected = pyro_vae.get_latent(vae, torch.from_numpy(counts), covariates={"y": y})

    returned = add_latent(vae, adata, layer="counts", covariates=["batch"])
    assert returned is adata and adata.obsm["X_pyro_vae"].shape == (CELLS, 2)
    assert np.allclose(adata.obsm["X_pyro_vae"], expected.numpy(), atol=1e-6)

    out = tmp_path / "with_codes.h5ad"
    add_latent(vae, path, dataset=dataset, key="X_codes", out=out)
    written = anndata.read_h5ad(out)
    assert np.allclose(written.obsm["X_codes"], expected.numpy(), atol=1e-6)
    assert "X_codes" not in anndata.read_h5ad(path).obsm  # the source is left as it was
    assert np.array_equal(written.layers["counts"].toarray(), counts)

    # Other cells, with one batch only, are encoded with the training's three classes.
    few, few_counts = make_adata(cells=6, batches=("c",))
    add_latent(vae, few, dataset=dataset)
    expected_few = pyro_vae.get_latent(vae, torch.from_numpy(few_counts), covariates={"y": torch.eye(3)[[2] * 6]})
    assert np.allclose(few.obsm["X_pyro_vae"], expected_few.numpy(), atol=1e-6)
    unknown, _ = make_adata(cells=6, batches=("z",))
    with pytest.raises(ValueError, match="'z'.*none of the classes"):
        add_latent(vae, unknown, dataset=dataset)
    with pytest.raises(ValueError, match="out= is where an .h5ad path is written back"):
        add_latent(vae, adata, layer="counts", covariates=["batch"], out=out)


def test_the_command_line_trains_on_an_h5ad_layer_and_the_run_reads_it_again(h5ad, tmp_path):
    path, _, _ = h5ad
    out = tmp_path / "run"
    assert main(["train", "--data", str(path), "--layer", "counts", "--covariate-columns", "batch", "--likelihood",
                 "poisson", "--epochs", "1", "--hidden", "8", "--latent-dim", "2", "--out", str(out)]) == 0  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config["data_columns"]["layer"] == "counts"
    dataset = pyro_vae.load_run(out).dataset
    assert dataset.columns["layer"] == "counts" and dataset.train.covariates.shape[1] == 3
    assert main(["evaluate", str(out), "--num-particles", "10"]) == 0


def test_add_latent_matches_genes_by_name_and_never_harms_the_file(h5ad, tmp_path):
    path, adata, counts = h5ad
    dataset = pyro_vae.data.load(path, layer="counts")
    torch.manual_seed(0)
    vae = pyro_vae.VAE(GENES, 2, hidden_sizes=(8,), likelihood="poisson")
    pyro_vae.fit(vae, dataset.train.x, epochs=2, progress=False)
    expected = add_latent(vae, adata.copy(), dataset=dataset).obsm["X_pyro_vae"]

    # The same cells with their genes in reverse order get the same codes.
    reversed_genes = adata[:, adata.var_names[::-1]].copy()
    assert np.allclose(add_latent(vae, reversed_genes, dataset=dataset).obsm["X_pyro_vae"], expected, atol=1e-6)
    # Renamed genes are not the training's genes; a gene named twice cannot be matched.
    renamed = adata.copy()
    renamed.var_names = [f"other{j}" for j in range(GENES)]
    with pytest.raises(ValueError, match="not in var_names"):
        add_latent(vae, renamed, dataset=dataset)
    twice = adata.copy()
    twice.var_names = ["gene0"] * 2 + [f"gene{j}" for j in range(2, GENES)]
    with pytest.raises(ValueError, match="twice"):
        add_latent(vae, twice, dataset=dataset)

    # A key HDF5 would read as a subgroup is refused before anything is written.
    before = path.read_bytes()
    with pytest.raises(ValueError, match="without '/'"):
        add_latent(vae, path, dataset=dataset, key="a/b")
    assert path.read_bytes() == before
    add_latent(vae, path, dataset=dataset, key="X_codes")
    assert np.allclose(anndata.read_h5ad(path).obsm["X_codes"], expected, atol=1e-6)


def test_reading_a_file_whose_genes_share_a_name_is_refused(tmp_path):
    adata, _ = make_adata()
    adata.var_names = ["g"] * GENES
    path = tmp_path / "dup.h5ad"
    adata.write_h5ad(path)
    with pytest.raises(ValueError, match="var_names_make_unique"):
        pyro_vae.data.load(path, layer="counts")


def test_a_layer_too_large_once_dense_is_refused_before_it_is_read(tmp_path):
    # 200,000 x 200,000 cells and genes: 100 stored values, 160 GB once dense in float32.
    n = 200_000
    layer = sparse.csr_matrix((np.ones(100, np.float32), (np.arange(0, n, n // 100), np.arange(100))), shape=(n, n))
    adata = anndata.AnnData(X=sparse.csr_matrix((n, n), dtype=np.float32))
    adata.layers["counts"] = layer
    path = tmp_path / "huge.h5ad"
    adata.write_h5ad(path)
    with pytest.raises(ValueError, match="GiB of memory available"):
        pyro_vae.data.load(path, layer="counts")
