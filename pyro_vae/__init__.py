"""pyro_vae: variational autoencoders written as Pyro programs."""

__version__ = "0.1.0"

from . import data, diagnostics, quality
from .checkpoint import load, load_run, save
from .comparison import compare, plot_comparison
from .evaluate import LogLikelihood, log_likelihood
from .export import to_inference_data
from .latent_mixture import LatentMixture
from .likelihoods import LIKELIHOODS, DensityLikelihood, Likelihood, Positive, get_likelihood, register_likelihood
from .model import VAE
from .predictive import (
    AggregatePosterior,
    PredictiveSamples,
    posterior_predictive,
    prior_predictive,
    reconstruct,
)
from .priors import PRIORS, Prior, get_prior, register_prior
from .sampling import sample
from .train import History, elbo_per_point, fit

__all__ = [
    "AggregatePosterior",
    "DensityLikelihood",
    "History",
    "LIKELIHOODS",
    "LatentMixture",
    "Likelihood",
    "LogLikelihood",
    "PRIORS",
    "Positive",
    "PredictiveSamples",
    "Prior",
    "VAE",
    "compare",
    "data",
    "diagnostics",
    "elbo_per_point",
    "fit",
    "get_likelihood",
    "get_prior",
    "load",
    "load_run",
    "log_likelihood",
    "plot_comparison",
    "posterior_predictive",
    "prior_predictive",
    "quality",
    "reconstruct",
    "register_likelihood",
    "register_prior",
    "sample",
    "save",
    "to_inference_data",
]
