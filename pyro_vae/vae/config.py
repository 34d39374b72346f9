"""The JSON description of a :class:`~pyro_vae.VAE` (``config.json``, the ``config`` of a saved
model) and rebuilding a model from it, including files written by earlier versions."""

from __future__ import annotations

import json
from typing import Any

from torch import nn

from ..latent.mixture import LatentMixture

#: The class path of the built-in VAE, as :func:`class_path` writes it.
VAE_CLASS = "pyro_vae.vae.model.VAE"


def describe(vae: Any) -> dict[str, Any]:
    """The JSON-serialisable description of ``vae`` from which :func:`rebuild` makes it again."""
    self = vae
    cfg = {
        "class": class_path(type(self)),
        "input_dim": self.input_dim,
        "latent_dim": self.latent_dim,
        **self._architecture,
        "likelihood": self.likelihood.name,
        "likelihood_kwargs": self.likelihood.config,
        "prior": self.prior.name,
        "prior_kwargs": self.prior.config,
        "guide": self.guide_family.name,
        "guide_kwargs": self.guide_family.config,
        "covariate_dim": self.covariate_dim,
        "standardize": self.standardize,
        "image_shape": list(self.image_shape) if self.image_shape else None,
        "input_scale": self.input_scale,
        "input_transform": self.input_transform,
        "missing": self.missing,
        "custom_networks": self.custom_networks,
        "latent_mixture": _latent_mixture_config(self),
        # A subclass's own constructor arguments (HierarchicalVAE's bottom_dim).
        **{name: getattr(self, name) for name in getattr(type(self), "extra_options", ())},
    }
    json.dumps(cfg)  # fail early, not at save time, on a non-serialisable argument
    return cfg


def _latent_mixture_config(self: Any) -> dict[str, Any] | None:
    mixture = self.latent_mixture
    if mixture is None:
        return None
    if not isinstance(mixture, LatentMixture) or mixture.latent_dim != self.latent_dim:
        raise ValueError(
            "vae.latent_mixture must be a LatentMixture over this VAE's latent_dim="
            f"{self.latent_dim}; fit one with LatentMixture.fit(vae, x, num_components)."
        )
    return mixture.config()


def rebuild(cls: type, cfg: dict[str, Any], **networks: nn.Module) -> Any:
    """``cls`` (a VAE class) built from :func:`describe`'s description, with the user networks given."""
    cfg = normalised_config(cfg)
    saved = cfg["class"]
    if not isinstance(saved, str) or current_class_path(saved) != class_path(cls):
        name = saved.rsplit(".", 1)[-1]
        raise ValueError(
            f"This model was saved from the class {saved}, not {class_path(cls)}: it may hold latents and "
            f"parameters of its own. Load it with that class: pyro_vae.load(path, cls={name})."
        )
    custom = cfg.get("custom_networks", {})
    for part in ("encoder", "decoder"):
        if custom.get(part) and part not in networks:
            raise ValueError(
                f"This model was built with a custom {part}; pass it again, e.g. "
                f"pyro_vae.load(path, {part}=My{part.capitalize()}(...))."
            )
    vae = cls(
        cfg["input_dim"],
        cfg["latent_dim"],
        hidden_sizes=cfg["hidden_sizes"],
        activation=cfg["activation"],
        likelihood=cfg["likelihood"],
        likelihood_kwargs=cfg["likelihood_kwargs"],
        prior=cfg["prior"],
        prior_kwargs=cfg["prior_kwargs"],
        guide=cfg["guide"],
        guide_kwargs=cfg["guide_kwargs"],
        covariate_dim=cfg["covariate_dim"],
        standardize=cfg["standardize"],
        image_shape=cfg["image_shape"],
        input_scale=cfg.get("input_scale"),
        missing=cfg.get("missing", False),
        input_transform=cfg["input_transform"],
        encoder=networks.get("encoder"),
        decoder=networks.get("decoder"),
        **{name: cfg[name] for name in getattr(cls, "extra_options", ()) if name in cfg},
    )
    if cfg.get("latent_mixture"):
        # Placeholder of the right shape; the saved state fills it.
        vae.latent_mixture = LatentMixture(latent_dim=vae.latent_dim, **cfg["latent_mixture"])
    return vae


def normalised_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with the keys that later versions added set to what older files meant."""
    defaults = {
        "class": VAE_CLASS,
        "guide": "normal",
        "guide_kwargs": {},
        "covariate_dim": 0,
        "standardize": False,
        "missing": False,
        "input_transform": "none",  # models saved before the option read x itself
    }
    return {**defaults, **cfg}


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


#: Modules of saved classes that have moved since the files were written: the one place an old
#: module path is still read (a saved model names its class), never imported.
_MOVED_CLASS_MODULES = {"pyro_vae.model": "pyro_vae.vae.model"}


def current_class_path(path: str) -> str:
    """A saved class path with a module that has moved since (``pyro_vae.model.VAE``) read as today's."""
    module, _, name = path.rpartition(".")
    return f"{_MOVED_CLASS_MODULES.get(module, module)}.{name}"
