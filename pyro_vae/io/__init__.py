"""What pyro_vae writes and reads: saved models and training checkpoints (one format, checked on
read), run folders, the ArviZ export, and codes written into AnnData files."""

from .anndata_latent import add_latent
from .checkpoint import load, save
from .export import to_inference_data
from .runs import load_run

__all__ = [
    "add_latent",
    "load",
    "load_run",
    "save",
    "to_inference_data",
]
