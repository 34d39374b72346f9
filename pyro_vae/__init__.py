"""pyro_vae: variational autoencoders written as Pyro programs.

The package is laid out by concept (``docs/architecture.md``); this module is its public API.
"""

from . import data, diagnostics, evaluate, latent, program
from ._version import __version__
from .diagnostics.criticism import PredictiveCheck, posterior_predictive_check
from .evaluate.bdmc import BDMC, bdmc
from .evaluate.elbo import mean_elbo
from .evaluate.estimate import log_likelihood
from .evaluate.ranking import compare, plot_comparison
from .evaluate.result import LogLikelihood
from .io.anndata_latent import add_latent
from .io.checkpoint import load, save
from .io.export import to_inference_data
from .io.parameters import load_parameters, save_parameters
from .io.runs import load_run
from .latent.aggregate import AggregatePosterior
from .latent.imputation import Imputation, impute
from .latent.mixture import LatentMixture
from .latent.predictive import (
    PredictiveSamples,
    get_latent,
    posterior_predictive,
    prior_predictive,
    reconstruct,
)
from .latent.sampling import sample
from .likelihoods import (
    LIKELIHOODS,
    DensityLikelihood,
    Likelihood,
    Positive,
    get_likelihood,
    register_likelihood,
)
from .program.protocol import Program, as_program
from .train.loop import fit
from .train.state import History
from .vae.guides import GUIDES, GuideFamily, get_guide, register_guide
from .vae.hierarchy import HierarchicalVAE
from .vae.model import VAE
from .vae.networks import FlattenLeading
from .vae.priors import PRIORS, Prior, get_prior, register_prior

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
    "as_program",
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
    "save_parameters",
    "load_run",
    "log_likelihood",
    "mean_elbo",
    "plot_comparison",
    "posterior_predictive",
    "posterior_predictive_check",
    "PredictiveCheck",
    "prior_predictive",
    "program",
    "reconstruct",
    "register_guide",
    "register_likelihood",
    "register_prior",
    "sample",
    "save",
    "to_inference_data",
]
