"""Starting values from the data, before training (see :meth:`pyro_vae.VAE.initialize_from_data`).

* every likelihood: the decoder's output bias at each feature's mean through the link, learned
  scales and concentrations at the data's spread (``Likelihood.initial_values``); the output
  layer is the built-in MLP's last, or a user decoder's where it is an ``nn.Linear`` or an
  ``nn.Sequential`` ending in one (:func:`output_layer`);
* a linear decoder (built-in or a user's ``nn.Linear``) with a Gaussian likelihood and a standard
  normal prior -- probabilistic PCA -- at the data's maximum-likelihood solution (Tipping & Bishop
  1999), with a built-in linear encoder at its exact posterior. With missing entries (a ``mask``)
  the solution reads the observed entries only (EM, :func:`~pyro_vae.distributions.linear_gaussian.ppca_missing`);
  the encoder, whose exact posterior then depends on which entries are seen, starts as built.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._util.maths import inverse_softplus
from ..distributions.linear_gaussian import ppca_missing, ppca_solution
from .networks import FlattenLeading, MLPDecoder, MLPEncoder


@torch.no_grad()
def initialize_from_data(vae, x: Any, *, checked: bool = False, mask: torch.Tensor | None = None) -> None:
    """Start ``vae``'s parameters where the data ``x`` (shape ``(N, D)``) put them; ``checked`` says
    ``x`` has been through ``vae.check_data`` already; ``mask`` (True where observed) leaves the
    missing entries out of the linear-Gaussian start."""
    if not checked:
        x = vae.check_data(x, "x")
    if vae.standardize:
        vae.data_loc.copy_(x.mean(0))
        vae.data_scale.copy_(x.std(0, correction=0).clamp(min=1e-6))
        x = (x - vae.data_loc) / vae.data_scale
    if vae.likelihood.uses_size_factors:
        vae.library_median.fill_(float(x.sum(-1).median().clamp(min=1.0)))
    output = output_layer(vae)
    vae.likelihood.initialize_from(x, output.bias if output is not None else None)
    if mask is not None and bool(mask.all()):
        mask = None
    if is_linear_gaussian(vae) and (mask is None or not vae.standardize):
        start_at_ppca(vae, x, mask)


def output_layer(vae) -> nn.Linear | None:
    """The linear layer that makes the decoder's raw outputs, where there is one: the last layer of
    the built-in MLP, a user's ``nn.Linear``, or the last module of a user's ``nn.Sequential`` (also
    inside :class:`~pyro_vae.vae.networks.FlattenLeading`), with a bias of the likelihood's raw size
    ``D * params_per_feature``. ``None`` for any other decoder: its start is its own."""
    decoder = vae.decoder
    decoder = decoder.net if isinstance(decoder, FlattenLeading) else decoder
    if isinstance(decoder, MLPDecoder):
        decoder = decoder.net
    last = decoder[-1] if isinstance(decoder, nn.Sequential) and len(decoder) else decoder
    outputs = vae.input_dim * vae.likelihood.params_per_feature
    if not isinstance(last, nn.Linear) or last.bias is None or last.out_features != outputs:
        return None
    return last


def linear_decoder(vae) -> nn.Linear | None:
    """The decoder itself where it is one linear map of ``z`` (:func:`output_layer` with nothing before it)."""
    layer = output_layer(vae)
    decoder = vae.decoder
    decoder = decoder.net if isinstance(decoder, FlattenLeading) else decoder
    decoder = decoder.net if isinstance(decoder, MLPDecoder) else decoder
    alone = decoder is layer or (isinstance(decoder, nn.Sequential) and len(decoder) == 1)
    return layer if alone and layer is not None and layer.in_features == vae.latent_dim else None


def is_linear_gaussian(vae) -> bool:
    """Whether ``vae`` is probabilistic PCA: linear decoder, Gaussian likelihood, standard normal prior."""
    from ..likelihoods.continuous import NormalLikelihood

    return (
        linear_decoder(vae) is not None
        and not vae.covariate_dim
        and type(vae.likelihood) is NormalLikelihood
        and vae.likelihood.num_levels is None
        and vae.likelihood.scale.spec != "decoder"
        and vae.prior.name == "normal"
    )


def start_at_ppca(vae, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
    """``W = U (Lambda - s^2)^(1/2)``, ``b`` the mean, ``s^2`` the mean discarded eigenvalue; a linear
    encoder at ``z | x ~ N(M^-1 W^T (x - b), s^2 M^-1)``, ``M = W^T W + s^2 I`` (diagonal here).
    With ``mask``, the maximum-likelihood solution of the observed entries, and the encoder as built."""

    d = x.shape[1]
    scale = vae.likelihood.scale
    fixed = float(scale.spec) ** 2 if scale.is_fixed else None
    floor = (2 * scale.floor) ** 2
    if mask is None:
        mean, weights, noise = ppca_solution(x.double(), vae.latent_dim, noise=fixed, min_noise=floor)
    else:
        mean, weights, noise = ppca_missing(x.double(), mask, vae.latent_dim, noise=fixed, min_noise=floor)
    decoder = linear_decoder(vae)
    assert decoder is not None, "only a linear decoder starts at the PPCA solution"
    decoder.weight.copy_(weights.to(decoder.weight.dtype))
    decoder.bias.copy_(mean.to(decoder.bias.dtype))
    scale.set_from(torch.full((d,), noise**0.5, dtype=x.dtype))
    head = getattr(vae.encoder, "head", None)
    if (
        mask is None
        and not vae.missing  # an encoder that also reads the mask has no closed-form start
        and isinstance(vae.encoder, MLPEncoder)
        and len(vae.encoder.body) == 0
        and vae.input_scale == 1.0
        and head is not None
    ):
        # z | x ~ N(M^-1 W^T (x - b), s^2 M^-1) with M = W^T W + s^2 I, diagonal here.
        m_diag = weights.pow(2).sum(0) + noise
        gain = weights.T / m_diag[:, None]  # (L, D)
        sd = (noise / m_diag).sqrt()
        head.weight.zero_()
        head.weight[: vae.latent_dim].copy_(gain.to(head.weight.dtype))
        head.bias[: vae.latent_dim].copy_((-gain @ mean).to(head.bias.dtype))
        raw = (sd - 1e-4).clamp(min=1e-6)
        head.bias[vae.latent_dim :].copy_(inverse_softplus(raw).to(head.bias.dtype))
