"""Encoder and decoder networks.

Plain :class:`torch.nn.Module` objects with no Pyro import: the model and guide in
:mod:`pyro_vae.vae.model` register them with ``pyro.module``. Any user module with the same
call signature can take their place.

* An **encoder** maps ``x`` of shape ``(batch, input_dim)`` to ``(loc, scale)``, each of shape
  ``(batch, latent_dim)``, the parameters of the diagonal Gaussian ``q(z|x)``.
* A **decoder** maps ``z`` of shape ``(batch, latent_dim)`` to the raw parameters of
  ``p(x|z)``, of shape ``(batch, output_dim)``, where ``output_dim`` is
  ``input_dim * likelihood.params_per_feature``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

ACTIVATIONS = {"softplus": nn.Softplus, "relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}
#: ``activation="gated"`` makes every hidden layer a :class:`GatedDense` layer.
GATED = "gated"

# Posterior scales are kept away from zero so log q(z|x) stays finite.
_MIN_SCALE = 1e-4


class GatedDense(nn.Module):
    """A gated dense layer, ``h = (W x + b) * sigmoid(V x + c)`` (Dauphin et al. 2017).

    The layer of the MLP VAEs of Tomczak & Welling (2018) and Norouzi et al. (2020): the gate
    decides, per unit and per input, how much of the linear response passes. Shapes: ``(..., fan_in)
    -> (..., fan_out)``.
    """

    def __init__(self, fan_in: int, fan_out: int):
        super().__init__()
        self.linear = nn.Linear(fan_in, fan_out)
        self.gate = nn.Linear(fan_in, fan_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * torch.sigmoid(self.gate(x))


def check_activation(activation: str) -> str:
    if activation != GATED and activation not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {activation!r}; choose one of {sorted([*ACTIVATIONS, GATED])}.")
    return activation


def mlp(sizes: Sequence[int], activation: str = "softplus") -> nn.Sequential:
    """A multilayer perceptron with ``activation`` between layers and none after the last.

    With ``activation="gated"`` each hidden layer is a :class:`GatedDense` layer (its gate is its
    non-linearity) and the last layer is linear.
    """
    check_activation(activation)
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        if activation == GATED and not last:
            layers.append(GatedDense(fan_in, fan_out))
            continue
        layers.append(nn.Linear(fan_in, fan_out))
        if not last:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def hidden_layers(sizes: Sequence[int], activation: str) -> tuple[nn.Module, nn.Module]:
    """``(body, act)``: ``act(body(x))`` maps ``sizes[0]`` inputs through every hidden layer of ``sizes[1:]``."""
    if activation == GATED:
        return nn.Sequential(*(GatedDense(a, b) for a, b in zip(sizes[:-1], sizes[1:]))), nn.Identity()
    return mlp(sizes, activation), (ACTIVATIONS[activation]() if len(sizes) > 1 else nn.Identity())


class MLPEncoder(nn.Module):
    """``x -> (loc, scale)`` of a diagonal Gaussian, through hidden layers ``hidden_sizes``."""

    def __init__(
        self,
        input_dim: int,
        latent_dim: int,
        hidden_sizes: Sequence[int] = (400,),
        activation: str = "softplus",
    ):
        super().__init__()
        self.body, self.act = hidden_layers([input_dim, *hidden_sizes], activation)
        width = hidden_sizes[-1] if hidden_sizes else input_dim
        self.head = nn.Linear(width, 2 * latent_dim)
        self.latent_dim = latent_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.act(self.body(x))
        loc, raw_scale = self.head(hidden).split(self.latent_dim, dim=-1)
        return loc, F.softplus(raw_scale) + _MIN_SCALE


class MLPDecoder(nn.Module):
    """``z -> raw likelihood parameters`` through hidden layers ``hidden_sizes``."""

    def __init__(
        self,
        latent_dim: int,
        output_dim: int,
        hidden_sizes: Sequence[int] = (400,),
        activation: str = "softplus",
    ):
        super().__init__()
        self.net = mlp([latent_dim, *hidden_sizes, output_dim], activation)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class FlattenLeading(nn.Module):
    """Run ``net`` on inputs with any leading dimensions by flattening them into one batch.

    Tools draw many particles at once, so a network inside a program sees ``(..., B, L)``
    inputs. A network written for ``(B, L)`` -- a convolutional decoder, say -- works after
    ``FlattenLeading(net)``: it receives ``(prod(...) * B, L)`` and its outputs (a tensor or a
    tuple of tensors) get the leading dimensions back.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, inputs: torch.Tensor):
        return flatten_leading(self.net)(inputs)


def mlp_parameter_count(sizes: Sequence[int], gated: bool = False) -> int:
    """Weights and biases of an MLP with layer widths ``sizes`` (gated hidden layers have two maps)."""
    layers = [int(a) * int(b) + int(b) for a, b in zip(sizes[:-1], sizes[1:])]
    return sum(layers) + (sum(layers[:-1]) if gated else 0)


def flatten_leading(net):
    """``net`` applied with leading dimensions flattened (a function, not a module: nothing to register)."""

    def apply(inputs: torch.Tensor):
        if inputs.ndim <= 2:
            return net(inputs)
        lead = inputs.shape[:-1]
        out = net(inputs.reshape(-1, inputs.shape[-1]))
        if isinstance(out, tuple):
            return tuple(o.reshape(*lead, *o.shape[1:]) for o in out)
        return out.reshape(*lead, *out.shape[1:])

    return apply
