"""The built-in models: :class:`VAE` (and :class:`HierarchicalVAE`, two stochastic layers) with its networks, registered priors and guide families, and its
data-driven start."""

from .guides import GUIDES, GuideFamily, get_guide, register_guide
from .hierarchy import HierarchicalVAE
from .model import VAE
from .networks import FlattenLeading, GatedDense, MLPDecoder, MLPEncoder
from .priors import PRIORS, Prior, get_prior, register_prior

__all__ = [
    "FlattenLeading",
    "GatedDense",
    "get_guide",
    "get_prior",
    "GuideFamily",
    "GUIDES",
    "HierarchicalVAE",
    "MLPDecoder",
    "MLPEncoder",
    "Prior",
    "PRIORS",
    "register_guide",
    "register_prior",
    "VAE",
]
