"""Private helpers every layer may use: argument checks, registries, file writing, reading untrusted
files, memory accounting, the isolated Pyro state, and every private or version-dependent API of
torch, Pyro and ArviZ (:mod:`pyro_vae._util.compat`). Nothing here imports the rest of the package."""

__all__ = []
