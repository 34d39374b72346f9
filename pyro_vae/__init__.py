"""pyro_vae: variational autoencoders written as Pyro programs."""

from ._version import __version__
from . import ais, baselines, data, diagnostics, latent, objectives, program, quality, rows
from .ais import BDMC, bdmc
from .checkpoint import load, save
from .cli import load_run
from .comparison import compare, plot_comparison
from .evaluate import LogLikelihood, log_likelihood
from .export import to_inference_data
from .guides import GUIDES, GuideFamily, get_guide, register_guide
from .latent import AggregatePosterior
from .latent_mixture import LatentMixture
from .likelihoods import LIKELIHOODS, DensityLikelihood, Likelihood, Positive, get_likelihood, register_likelihood
from .model import VAE
from .networks import FlattenLeading
from .predictive import PredictiveSamples, posterior_predictive, prior_predictive, reconstruct
from .priors import PRIORS, Prior, get_prior, register_prior
from .program import Program, as_program
from .sampling import sample
from .train import History, fit, mean_elbo

__all__ = [
    "AggregatePosterior",
    "BDMC",
    "DensityLikelihood",
    "FlattenLeading",
    "GUIDES",
    "GuideFamily",
    "History",
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
    "ais",
    "baselines",
    "bdmc",
    "as_program",
    "compare",
    "data",
    "diagnostics",
    "fit",
    "get_guide",
    "get_likelihood",
    "get_prior",
    "latent",
    "load",
    "load_run",
    "log_likelihood",
    "mean_elbo",
    "objectives",
    "plot_comparison",
    "posterior_predictive",
    "prior_predictive",
    "program",
    "quality",
    "reconstruct",
    "rows",
    "register_guide",
    "register_likelihood",
    "register_prior",
    "sample",
    "save",
    "to_inference_data",
]
