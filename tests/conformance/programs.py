"""Programs written the way Pyro's examples and tutorials write them, each with a closed form.

Every program is linear-Gaussian where it can be, so that each tool's answer has an independent
computation to be checked against: ``log p(x)`` of a Gaussian, the exact posterior as the guide,
mixtures of Gaussians for the aggregate distributions. The idioms, one or more per program:

* ``TutorialPPCA`` -- Pyro's VAE tutorial: ``pyro.plate("data")`` without a size, the prior built
  with ``x.new_zeros(torch.Size((B, L)))``, sites named ``"latent"`` and ``"obs"``,
  ``obs=x.reshape(-1, D)`` of image-shaped data;
* ``LabelledM2`` -- the semi-supervised VAE (``ss_vae_M2.py``): an observed label
  ``pyro.sample("y", OneHotCategorical(...), obs=ys)`` beside the image, ``ys=None`` allowed;
* ``ConditionalPrior`` -- the CVAE (``examples/cvae``): a prior network ``p(z|x)`` and an observed
  site ``"y"`` that is not the input ``x``;
* ``GreyBernoulli`` -- the tutorial's ``Bernoulli(..., validate_args=False)``;
* ``MaskedRows`` -- ``poutine.mask`` around the likelihood, ``.mask(...)`` on the guide;
* ``BooleanIndex`` -- a network line that indexes with a boolean mask (the CVAE's ``loc[xs == -1]``);
* ``Sequence`` -- a deep-Markov-style chain ``z_1 -> z_2 -> z_3`` with one observed site per step.

Sizes and names differ from the library's own on purpose.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine


def _orthogonal(rows: int, cols: int, scales, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(rows, cols, generator=g))
    return q * torch.tensor(scales[:cols])


def gaussian_log_density(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """``log N(x; mean, cov)`` in float64, rows of ``x`` (and ``mean``) along the first dimension."""
    return torch.distributions.MultivariateNormal(mean.double(), covariance_matrix=cov.double()).log_prob(x.double())


class TutorialPPCA:
    """``latent ~ N(0, I_L)``, ``obs | latent ~ N(W latent + b, s^2 I)``; data of shape ``(N, 2, 3)``."""

    L, SHAPE, SIGMA = 2, (2, 3), 0.5

    def __init__(self, seed: int = 0):
        self.D = math.prod(self.SHAPE)
        g = torch.Generator().manual_seed(seed + 10)
        self.W = _orthogonal(self.D, self.L, [1.8, 0.9], seed)
        self.b = torch.randn(self.D, generator=g)

    def model(self, x):
        with pyro.plate("data"):
            z_loc = x.new_zeros(torch.Size((x.shape[0], self.L)))
            z_scale = x.new_ones(torch.Size((x.shape[0], self.L)))
            z = pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))
            loc = z @ self.W.T + self.b
            pyro.sample("obs", dist.Normal(loc, self.SIGMA).to_event(1), obs=x.reshape(-1, self.D))

    def posterior(self, x):
        """Mean ``(N, L)`` and standard deviations ``(L,)`` of ``latent | x``: diagonal, W's columns
        being orthogonal."""
        m = self.W.T @ self.W + self.SIGMA**2 * torch.eye(self.L)
        inverse = torch.linalg.inv(m)
        centred = x.reshape(x.shape[0], -1) - self.b
        return centred @ self.W @ inverse.T, (self.SIGMA**2 * inverse).diagonal().sqrt()

    def guide(self, x):
        loc, sd = self.posterior(x)
        with pyro.plate("data"):
            pyro.sample("latent", dist.Normal(loc, sd).to_event(1))

    def log_marginal(self, x):
        cov = self.W @ self.W.T + self.SIGMA**2 * torch.eye(self.D)
        return gaussian_log_density(x.reshape(x.shape[0], -1), self.b.expand(x.shape[0], -1), cov)

    def simulate(self, n: int, seed: int = 1) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.L, generator=g)
        x = z @ self.W.T + self.b + self.SIGMA * torch.randn(n, self.D, generator=g)
        return x.reshape(n, *self.SHAPE)


class LabelledM2:
    """``z ~ N(0, I)``, ``y ~ OneHotCategorical(pi)`` observed, ``x | z, y ~ N(W z + V y, s^2 I)``.

    ``log p(x, y) = log pi_y + log N(x; V y, W W^T + s^2 I)``; the guide is the exact ``q(z | x, y)``.
    """

    L, D, K, SIGMA = 2, 5, 3, 0.4

    def __init__(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed + 20)
        self.W = _orthogonal(self.D, self.L, [1.5, 0.7], seed)
        self.V = 2.0 * torch.randn(self.D, self.K, generator=g)
        self.pi = torch.tensor([0.5, 0.3, 0.2])

    def model(self, xs, ys=None):
        batch = xs.shape[0]
        with pyro.plate("data"):
            zs = pyro.sample("z", dist.Normal(xs.new_zeros([batch, self.L]), xs.new_ones([batch, self.L])).to_event(1))
            ys = pyro.sample("y", dist.OneHotCategorical(self.pi.expand(batch, self.K)), obs=ys)
            loc = zs @ self.W.T + ys @ self.V.T
            pyro.sample("x", dist.Normal(loc, self.SIGMA).to_event(1), obs=xs)

    def guide(self, xs, ys=None):
        m = self.W.T @ self.W + self.SIGMA**2 * torch.eye(self.L)
        inverse = torch.linalg.inv(m)
        with pyro.plate("data"):
            loc = (xs - ys @ self.V.T) @ self.W @ inverse.T
            pyro.sample("z", dist.Normal(loc, (self.SIGMA**2 * inverse).diagonal().sqrt()).to_event(1))

    def enumerated_guide(self, xs, ys=None):
        """``ss_vae_M2.py``'s guide for unlabelled rows: ``q(y|x)`` (here the exact posterior over
        classes) sampled and, under ``config_enumerate``, summed out."""
        if ys is None:
            logits = torch.stack([self.log_joint(xs, self._class(k, len(xs))) for k in range(self.K)], -1).float()
            with pyro.plate("data"):
                ys = pyro.sample("y", dist.OneHotCategorical(logits=logits))
        self.guide(xs, ys)

    def _class(self, k, n):
        return torch.nn.functional.one_hot(torch.full((n,), k), self.K).float()

    def log_evidence(self, x):
        """``log p(x) = log sum_k pi_k N(x; V e_k, W W^T + s^2 I)``: the label summed out."""
        return torch.stack([self.log_joint(x, self._class(k, len(x))) for k in range(self.K)], -1).logsumexp(-1)

    def log_joint(self, x, y):
        cov = self.W @ self.W.T + self.SIGMA**2 * torch.eye(self.D)
        return gaussian_log_density(x, y @ self.V.T, cov) + (y * self.pi.log()).sum(-1).double()

    def simulate(self, n: int, seed: int = 1):
        g = torch.Generator().manual_seed(seed)
        y = torch.nn.functional.one_hot(torch.multinomial(self.pi, n, replacement=True, generator=g), self.K).float()
        z = torch.randn(n, self.L, generator=g)
        return z @ self.W.T + y @ self.V.T + self.SIGMA * torch.randn(n, self.D, generator=g), y


class ConditionalPrior:
    """A CVAE: ``latent | x ~ N(A x, sp^2 I)`` (a prior network) and ``y | latent ~ N(W latent + c, s^2 I)``
    observed at the site ``"y"``; the tools' ``x`` is the input.

    ``log p(y | x) = log N(y; W A x + c, sp^2 W W^T + s^2 I)``; the guide is the exact
    ``q(latent | x, y)``, diagonal since ``W`` has orthogonal columns.
    """

    L, D, P, SP, SIGMA = 2, 4, 3, 0.8, 0.5

    def __init__(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed + 30)
        self.A = torch.randn(self.L, self.D, generator=g)
        self.W = _orthogonal(self.P, self.L, [1.4, 0.8], seed)
        self.c = torch.randn(self.P, generator=g)

    def model(self, xs, ys=None):
        with pyro.plate("data"):
            prior_loc = xs @ self.A.T
            zs = pyro.sample("latent", dist.Normal(prior_loc, self.SP).to_event(1))
            pyro.sample("y", dist.Normal(zs @ self.W.T + self.c, self.SIGMA).to_event(1), obs=ys)

    def posterior(self, xs, ys):
        precision = torch.eye(self.L) / self.SP**2 + self.W.T @ self.W / self.SIGMA**2
        cov = torch.linalg.inv(precision)
        loc = ((xs @ self.A.T) / self.SP**2 + (ys - self.c) @ self.W / self.SIGMA**2) @ cov.T
        return loc, cov.diagonal().sqrt()

    def guide(self, xs, ys=None):
        loc, sd = self.posterior(xs, ys)
        with pyro.plate("data"):
            pyro.sample("latent", dist.Normal(loc, sd).to_event(1))

    def log_conditional(self, x, y):
        cov = self.SP**2 * self.W @ self.W.T + self.SIGMA**2 * torch.eye(self.P)
        return gaussian_log_density(y, x @ self.A.T @ self.W.T + self.c, cov)

    def marginal_prior(self, x) -> dist.MixtureSameFamily:
        """``(1/N) sum_i p(z | x_i)``, computed independently of the library."""
        return dist.MixtureSameFamily(
            dist.Categorical(logits=torch.zeros(x.shape[0])), dist.Normal(x @ self.A.T, self.SP).to_event(1)
        )

    def aggregate_posterior(self, x, y) -> dist.MixtureSameFamily:
        loc, sd = self.posterior(x, y)
        return dist.MixtureSameFamily(
            dist.Categorical(logits=torch.zeros(x.shape[0])), dist.Normal(loc, sd.expand_as(loc)).to_event(1)
        )

    def simulate(self, n: int, seed: int = 1):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, self.D, generator=g)
        z = x @ self.A.T + self.SP * torch.randn(n, self.L, generator=g)
        return x, z @ self.W.T + self.c + self.SIGMA * torch.randn(n, self.P, generator=g)


class GreyBernoulli:
    """The tutorial's likelihood: ``Bernoulli(probs, validate_args=False)`` over pixels."""

    L, D = 2, 6

    def __init__(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed + 40)
        self.W = torch.randn(self.D, self.L, generator=g)

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("latent", dist.Normal(x.new_zeros(x.shape[0], self.L), 1.0).to_event(1))
            probs = torch.sigmoid(z @ self.W.T)
            pyro.sample("obs", dist.Bernoulli(probs, validate_args=False).to_event(1), obs=x)

    def guide(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("latent", dist.Normal(x.new_zeros(x.shape[0], self.L), 1.0).to_event(1))


class MaskedRows(TutorialPPCA):
    """:class:`TutorialPPCA` whose likelihood is wrapped in ``poutine.mask`` for the rows the
    covariate ``keep`` marks, and whose guide puts an all-True ``.mask(...)`` on its distribution:
    masked rows have ``log p(x_i) = 0``."""

    def model(self, x, keep):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("latent", dist.Normal(x.new_zeros(x.shape[0], self.L), 1.0).to_event(1))
            with poutine.mask(mask=keep):
                pyro.sample("obs", dist.Normal(z @ self.W.T + self.b, self.SIGMA).to_event(1), obs=x)

    def guide(self, x, keep):
        loc, sd = self.posterior(x)  # the exact posterior: p(z | x_i), or the prior where x_i is masked out
        loc, sd = torch.where(keep[:, None], loc, 0.0), torch.where(keep[:, None], sd, 1.0)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("latent", dist.Normal(loc, sd).to_event(1).mask(torch.ones(x.shape[0], dtype=torch.bool)))


class BooleanIndex(TutorialPPCA):
    """:class:`TutorialPPCA` whose model selects entries with a boolean index of ``x`` before
    reshaping to ``(B, -1)``, as the CVAE example does; it cannot take a particle dimension."""

    def model(self, x):
        batch = x.shape[0]
        with pyro.plate("data", batch):
            z = pyro.sample("latent", dist.Normal(x.new_zeros(batch, self.L), 1.0).to_event(1))
            loc = (z @ self.W.T + self.b).reshape(-1, self.D)
            chosen = (x.reshape(batch, -1) > -1e9).reshape(-1, self.D)
            pyro.sample(
                "obs", dist.Normal(loc[chosen].view(batch, -1), self.SIGMA).to_event(1), obs=x.reshape(batch, -1)
            )

    def guide(self, x):
        loc, sd = self.posterior(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("latent", dist.Normal(loc, sd).to_event(1))


class Sequence:
    """A linear-Gaussian state-space model written like the deep Markov model: scalar states
    ``z_t = a z_{t-1} + noise`` over ``T`` steps, each observed at its own site ``"obs_t"``
    (``D`` values), and a guide ``q(z_t | z_{t-1}, x)`` that is the exact posterior, factorised
    step by step. ``log p(x)`` is the joint Gaussian's."""

    T, D, A, Q, SIGMA = 3, 2, 0.8, 0.6, 0.5

    def __init__(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed + 50)
        self.C = torch.randn(self.D, generator=g) + 1.0

    def _state_cov(self) -> torch.Tensor:
        """Covariance ``(T, T)`` of the states, from the recursion ``z_t = A z_{t-1} + Q eps_t``."""
        m = torch.zeros(self.T, self.T)
        for t in range(self.T):
            for s in range(t + 1):
                m[t, s] = self.A ** (t - s) * self.Q
        return m @ m.T

    def _joint(self):
        """Covariances of the states, of the observations and between them, float64."""
        szz = self._state_cov().double()
        loading = torch.kron(torch.eye(self.T), self.C[:, None]).double()  # (T D, T)
        sxx = loading @ szz @ loading.T + self.SIGMA**2 * torch.eye(self.T * self.D).double()
        return szz, sxx, szz @ loading.T

    def model(self, x):
        batch = x.shape[0]
        z_prev = x.new_zeros(batch)
        with pyro.plate("data", batch):
            for t in pyro.markov(range(self.T)):
                z = pyro.sample(f"z_{t + 1}", dist.Normal(self.A * z_prev, self.Q))
                pyro.sample(f"obs_{t + 1}", dist.Normal(z[..., None] * self.C, self.SIGMA).to_event(1), obs=x[:, t])
                z_prev = z

    def guide(self, x):
        szz, sxx, szx = self._joint()
        gain = szx @ torch.linalg.inv(sxx)
        post_mean = (x.reshape(x.shape[0], -1).double() @ gain.T).float()  # (B, T)
        post_cov = szz - gain @ szx.T
        z_prev = None
        with pyro.plate("data", x.shape[0]):
            for t in pyro.markov(range(self.T)):
                # q(z_t | z_{<t}, x): the exact posterior's conditional, given every earlier state.
                if t == 0:
                    loc, var = post_mean[:, 0], post_cov[0, 0]
                else:
                    coef = post_cov[t, :t] @ torch.linalg.inv(post_cov[:t, :t])
                    loc = post_mean[:, t] + ((z_prev - post_mean[:, :t]).double() @ coef).float()
                    var = post_cov[t, t] - coef @ post_cov[:t, t]
                z = pyro.sample(f"z_{t + 1}", dist.Normal(loc, float(var) ** 0.5))
                z_prev = z[..., None] if t == 0 else torch.cat([z_prev, z[..., None]], -1)

    def log_marginal(self, x):
        _, sxx, _ = self._joint()
        return gaussian_log_density(x.reshape(x.shape[0], -1), torch.zeros(x.shape[0], self.T * self.D), sxx)

    def simulate(self, n: int, seed: int = 1) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        z = torch.zeros(n)
        out = []
        for _ in range(self.T):
            z = self.A * z + self.Q * torch.randn(n, generator=g)
            out.append(z[:, None] * self.C + self.SIGMA * torch.randn(n, self.D, generator=g))
        return torch.stack(out, 1)  # (n, T, D)
