"""What pyro_vae writes and reads: saved models and training checkpoints (one format, checked on
read), run folders, and the ArviZ export."""

from .checkpoint import load, save
from .export import to_inference_data
from .runs import load_run

__all__ = [
    "load",
    "load_run",
    "save",
    "to_inference_data",
]
