"""pyro_vae: variational autoencoders written as Pyro programs.

The package is laid out by concept (``docs/architecture.md``); this module is its public API.
Modules that moved keep their old import paths (:mod:`pyro_vae._util.moved`).
"""

from ._util import moved as _moved

_moved.install()

from . import data, diagnostics, evaluate, latent, program  # noqa: E402
from ._version import __version__  # noqa: E402
from .data import rows  # noqa: E402
from .diagnostics import quality  # noqa: E402
from .diagnostics.criticism import PredictiveCheck, posterior_predictive_check  # noqa: E402
from .evaluate import ais, baselines  # noqa: E402
from .evaluate.bdmc import BDMC, bdmc  # noqa: E402
from .evaluate.estimate import log_likelihood  # noqa: E402
from .evaluate.ranking import compare, plot_comparison  # noqa: E402
from .evaluate.result import LogLikelihood  # noqa: E402
from .io.anndata_latent import add_latent  # noqa: E402
from .io.checkpoint import load, save  # noqa: E402
from .io.export import to_inference_data  # noqa: E402
from .io.parameters import load_parameters  # noqa: E402
from .io.runs import load_run  # noqa: E402
from .latent.aggregate import AggregatePosterior  # noqa: E402
from .latent.imputation import Imputation, impute  # noqa: E402
from .latent.mixture import LatentMixture  # noqa: E402
from .latent.predictive import (  # noqa: E402
    PredictiveSamples,
    get_latent,
    posterior_predictive,
    prior_predictive,
    reconstruct,
)
from .latent.sampling import sample  # noqa: E402
from .likelihoods import (  # noqa: E402
    LIKELIHOODS,
    DensityLikelihood,
    Likelihood,
    Positive,
    get_likelihood,
    register_likelihood,
)
from .program.protocol import Program, as_program  # noqa: E402
from .train import objectives  # noqa: E402
from .train.loop import fit  # noqa: E402
from .train.state import History  # noqa: E402
from .train.validation import mean_elbo  # noqa: E402
from .vae.guides import GUIDES, GuideFamily, get_guide, register_guide  # noqa: E402
from .vae.hierarchy import HierarchicalVAE  # noqa: E402
from .vae.model import VAE  # noqa: E402
from .vae.networks import FlattenLeading  # noqa: E402
from .vae.priors import PRIORS, Prior, get_prior, register_prior  # noqa: E402

__all__ = [
    "AggregatePosterior",
    "BDMC",
    "DensityLikelihood",
    "FlattenLeading",
    "GUIDES",
    "GuideFamily",
    "HierarchicalVAE",
    "History",
    "Imputation",
    "LIKELIHOODS",
    "LatentMixture",
    "Likelihood",
    "LogLikelihood",
    "PRIORS",
    "Positive",
    "PredictiveSamples",
    "Program",
    "Prior",
    "VAE",
    "__version__",
    "add_latent",
    "ais",
    "as_program",
    "baselines",
    "bdmc",
    "compare",
    "data",
    "diagnostics",
    "evaluate",
    "fit",
    "get_guide",
    "get_latent",
    "get_likelihood",
    "get_prior",
    "impute",
    "latent",
    "load",
    "load_parameters",
    "load_run",
    "log_likelihood",
    "mean_elbo",
    "objectives",
    "plot_comparison",
    "posterior_predictive",
    "posterior_predictive_check",
    "PredictiveCheck",
    "prior_predictive",
    "program",
    "quality",
    "reconstruct",
    "register_guide",
    "register_likelihood",
    "register_prior",
    "rows",
    "sample",
    "save",
    "to_inference_data",
]


def __getattr__(name: str) -> object:
    """``pyro_vae.checkpoint`` and the other old submodule names, imported on first use."""
    if f"pyro_vae.{name}" in _moved.MOVED:
        import importlib

        return importlib.import_module(f"pyro_vae.{name}")
    raise AttributeError(f"module 'pyro_vae' has no attribute {name!r}")
