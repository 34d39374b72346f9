"""pyro_vae: variational autoencoders written as Pyro programs."""

from . import data
from .checkpoint import load, save
from .likelihoods import LIKELIHOODS, Likelihood, get_likelihood, register_likelihood
from .model import VAE
from .predictive import (
    AggregatePosterior,
    PredictiveSamples,
    posterior_predictive,
    prior_predictive,
    reconstruct,
)
from .priors import PRIORS, Prior, get_prior, register_prior
from .train import History, elbo_per_point, fit

__version__ = "0.1.0"

__all__ = [
    "AggregatePosterior",
    "History",
    "LIKELIHOODS",
    "Likelihood",
    "PRIORS",
    "PredictiveSamples",
    "Prior",
    "VAE",
    "data",
    "elbo_per_point",
    "fit",
    "get_likelihood",
    "get_prior",
    "load",
    "posterior_predictive",
    "prior_predictive",
    "reconstruct",
    "register_likelihood",
    "register_prior",
    "save",
]
