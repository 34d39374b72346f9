"""Private helpers every layer may use: argument checks, registries, file writing, reading untrusted
files, memory accounting, the isolated Pyro state, every private or version-dependent API of torch
and Pyro (:mod:`pyro_vae._util.compat`), and both supported lines of ArviZ
(:mod:`pyro_vae._util.arviz_compat`). Nothing here imports the rest of the package."""

__all__ = []
