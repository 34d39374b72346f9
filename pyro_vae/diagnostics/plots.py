"""Figures: training curves, image grids and 2-D latent maps (matplotlib).

Every function writes a PNG to ``path``, closes its figure and returns the path; none needs a
display, and none changes the caller's matplotlib backend.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import torch

if TYPE_CHECKING:  # the training record is drawn, never built, here
    from ..train.state import History


def training_curve(history: History, path: str | os.PathLike) -> Path:
    """Per-point training objective and validation ELBO against epoch: the whole run on the left and,
    on the right, the range of its last epochs, which the first ones would otherwise flatten."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    epochs = history.column("epoch")
    val = history.column("val_elbo")
    warm = [e for e, w in zip(epochs, history.column("kl_weight")) if w < 1]
    for ax in axes:
        ax.plot(epochs, history.column("train_elbo"), label="train (objective)")
        if not all(math.isnan(v) for v in val):
            ax.plot(epochs, val, label="validation ELBO")
        if history.best_epoch is not None:
            ax.axvline(history.best_epoch, color="grey", ls=":", label=f"best epoch ({history.best_epoch})")
        if warm:
            ax.axvspan(0, max(warm), color="orange", alpha=0.1, label="KL warm-up")
        ax.set(xlabel="epoch", ylabel="ELBO per data point (nats)")
    axes[0].set_title("Training: the whole run")
    axes[0].legend()
    finite = [v for v in history.column("train_elbo") + val if math.isfinite(v)]
    if len(finite) > 10:  # the detail: the range of the last 90% of the values
        lo, hi = np.percentile(finite, [10, 100])
        axes[1].set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    axes[1].set_title("Detail: the top of the range")
    fig.tight_layout()
    return _save(fig, path)


def image_grid(
    images: torch.Tensor,
    image_shape: Sequence[int],
    path: str | os.PathLike,
    *,
    title: str = "",
    ncols: int = 10,
    row_labels: Sequence[str] | None = None,
    value_max: float = 1.0,
) -> Path:
    """Tile ``images`` of shape ``(n, D)`` with values in ``[0, value_max]`` as grey pictures
    (``value_max = 255`` for 8-bit levels)."""
    images = (images.detach().cpu().reshape(-1, *image_shape) / value_max).clamp(0, 1).numpy()
    n = len(images)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * 0.9, nrows * 0.9 + (0.4 if title else 0)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i < n:
            ax.imshow(images[i], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        else:
            ax.axis("off")
    if row_labels:
        for r, label in enumerate(row_labels[:nrows]):
            axes[r, 0].set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


@torch.no_grad()
def latent_map(
    vae,
    x: torch.Tensor,
    labels: torch.Tensor,
    path: str | os.PathLike,
    *,
    title: str = "",
    y: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> Path:
    """Encoder means of ``x`` (with covariates ``y`` for a conditional VAE, and the ``mask`` of
    observed entries for data with missing ones) coloured by label, over the prior density (2-D latents).

    For more than two latent dimensions the means are projected on their first two principal
    axes and the prior density is not drawn.
    """
    if mask is not None:  # missing entries (NaN) reach the encoder as zeros, with the mask
        x = torch.where(mask, x, torch.zeros_like(x))
    loc, _ = vae.encode(x, y, mask=mask)
    loc = loc.detach()
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    if vae.latent_dim == 2:
        points = loc
        span = float(points.abs().max()) * 1.1
        span = max(span, 3.0)
        grid = torch.linspace(-span, span, 200)
        zz = torch.stack(torch.meshgrid(grid, grid, indexing="xy"), -1).reshape(-1, 2)
        density = vae.prior().log_prob(zz).exp().reshape(200, 200)
        ax.contourf(grid, grid, density, levels=12, cmap="Greys", alpha=0.6)
        ax.set(xlabel="$z_1$", ylabel="$z_2$")
    else:
        centred = loc - loc.mean(0)
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        points = centred @ v[:2].T
        ax.set(xlabel="principal axis 1 of E[z|x]", ylabel="principal axis 2")
    scatter = ax.scatter(points[:, 0], points[:, 1], c=labels.numpy(), cmap="tab10", s=8, vmin=-0.5, vmax=9.5)
    fig.colorbar(scatter, ax=ax, ticks=range(10), label="label")
    ax.set_title(title or "Encoded test points (means of q(z|x)) over the prior density p(z)")
    ax.set_aspect("equal")
    return _save(fig, path)


def predictive_check_figure(check, path: str | os.PathLike, *, title: str = "") -> Path:
    """One panel per statistic of a :class:`~pyro_vae.diagnostics.criticism.PredictiveCheck`: for a
    scalar, the replicates' histogram and the observed value; for a vector, each entry's observed
    value against its replicates' median and central interval (the diagonal is a perfect fit)."""
    names = list(check.statistics)
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.4), squeeze=False)
    tail = (1 - check.level) / 2
    for ax, name in zip(axes[0], names):
        stat = check.statistics[name]
        reps, obs = stat.replicated.numpy(), stat.observed.numpy()
        if stat.undefined == obs.size:  # NaN everywhere: nothing to draw
            ax.set_title(f"{name}: NaN, no p-value", fontsize=9)
            ax.axis("off")
        elif obs.size == 1:
            ax.hist(reps[:, 0], bins=30, color="0.7")
            ax.axvline(obs[0], color="C3", label="observed")
            ax.set_xlabel(name)
            ax.legend(fontsize=8)
            ax.set_title(f"{name}: p = {float(stat.p_values[0]):.3f}", fontsize=9)
        else:
            low, mid, high = np.nanquantile(reps, [tail, 0.5, 1 - tail], axis=0)
            ax.errorbar(obs, mid, yerr=[mid - low, high - mid], fmt="o", ms=2, lw=0.5, color="C0", alpha=0.6)
            span = [np.nanmin([obs.min(), low.min()]), np.nanmax([obs.max(), high.max()])]
            ax.plot(span, span, color="0.4", lw=0.8)
            ax.set_xlabel(f"observed {name}")
            ax.set_ylabel("replicated")
            ax.set_title(f"{name}: {stat.share_extreme:.0%} of {obs.size} extreme", fontsize=9)
    fig.suptitle(
        title or f"Posterior-predictive checks ({check.num_samples} replicates; coverage {check.coverage:.1%})"
    )
    return _save(fig, path)


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
