"""Pyro programs written by hand (not built from VAE), with closed forms to check the tools against.

Linear-Gaussian models: ``h ~ N(0, I)``, ``obs | h, y ~ N(W h + V y + b, s^2 I)`` gives
``obs | y ~ N(V y + b, W W^T + s^2 I)`` and a Gaussian posterior, diagonal when ``W``'s columns
are orthogonal. Site names, plate names and sizes differ from the VAE's on purpose.
"""

import pyro
import pyro.distributions as dist
import torch

L, D, K = 3, 7, 4
SIGMA = 0.6


def orthogonal(d, latent, scales, seed):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, latent, generator=g))
    return q * torch.tensor(scales[:latent])


def gaussian_posterior(W, sigma, centred):
    """Mean ``(N, L)`` and standard deviations ``(L,)`` of ``h | obs`` for ``obs - E[obs|h=0] = centred``."""
    M = W.T @ W + sigma**2 * torch.eye(W.shape[1])
    Minv = torch.linalg.inv(M)
    return centred @ W @ Minv.T, (sigma**2 * Minv).diagonal().sqrt()


def gaussian_marginal(cov_factor, sigma, mean, x):
    cov = cov_factor @ cov_factor.T + sigma**2 * torch.eye(cov_factor.shape[0])
    return torch.distributions.MultivariateNormal(mean, covariance_matrix=cov).log_prob(x)


class ConditionalLinear:
    """``obs | h, y ~ N(W h + V y + b, SIGMA^2 I)`` in the plate ``"points"``, covariate ``y`` of width K."""

    def __init__(self, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.W = orthogonal(D, L, [2.0, 1.0, 0.5], seed)
        self.V = torch.randn(D, K, generator=g)
        self.b = torch.randn(D, generator=g)

    def mean(self, y):
        return y @ self.V.T + self.b

    def model(self, x, y):
        with pyro.plate("points", x.shape[0]):
            h = pyro.sample("h", dist.Normal(torch.zeros(L), 1.0).to_event(1))
            pyro.sample("obs", dist.Normal(h @ self.W.T + self.mean(y), SIGMA).to_event(1), obs=x)

    def guide(self, x, y, factor=1.0, shift=0.0):
        loc, sd = gaussian_posterior(self.W, SIGMA, x - self.mean(y))
        with pyro.plate("points", x.shape[0]):
            pyro.sample("h", dist.Normal(loc + shift, sd * factor).to_event(1))

    def inexact_guide(self, x, y):
        self.guide(x, y, factor=1.5, shift=0.3)

    def log_marginal(self, x, y):
        return gaussian_marginal(self.W, SIGMA, self.mean(y), x).double()

    def simulate(self, n, seed=1):
        g = torch.Generator().manual_seed(seed)
        y = torch.nn.functional.one_hot(torch.randint(K, (n,), generator=g), K).float()
        h = torch.randn(n, L, generator=g)
        return h @ self.W.T + self.mean(y) + SIGMA * torch.randn(n, D, generator=g), y


class TwoLayerLinear:
    """``top ~ N(0, I)``, ``mid | top ~ N(alpha top + a, s1^2 I)``, ``obs | mid ~ N(W mid + b, SIGMA^2 I)``
    in the plate ``"rows"``, with the exact posterior as guide (``obs -> mid -> top``).

    Everything a tool reports has a closed form: ``p(mid) = N(a, diag(P))`` with
    ``P = alpha^2 + s1^2``; ``p(mid | obs)`` is Gaussian with diagonal covariance (``W`` has orthogonal
    columns); ``q(top | obs) = N(c (m - a), c^2 V + s1^2 / P)`` with ``c = alpha / P``.
    ``direct=True`` makes ``obs`` depend on ``top`` as well (``obs | mid, top``), for the refusals.
    """

    def __init__(self, seed=0, direct=False):
        g = torch.Generator().manual_seed(seed)
        self.W = orthogonal(D, L, [2.0, 1.0, 0.5], seed)
        self.b = torch.randn(D, generator=g)
        self.alpha = torch.tensor([1.5, 0.5, 3.0])
        self.a = torch.tensor([0.5, -1.0, 0.0])
        self.s1 = torch.tensor([0.6, 0.5, 0.4])
        self.direct = direct

    @property
    def prior_var(self):
        return self.alpha**2 + self.s1**2

    def model(self, x):
        with pyro.plate("rows", x.shape[0]):
            top = pyro.sample("top", dist.Normal(torch.zeros(L), 1.0).to_event(1))
            mid = pyro.sample("mid", dist.Normal(self.alpha * top + self.a, self.s1).to_event(1))
            mean = mid @ self.W.T + self.b + (top.sum(-1, keepdim=True) if self.direct else 0.0)
            pyro.sample("obs", dist.Normal(mean, SIGMA).to_event(1), obs=x)

    def posterior_mid(self, x):
        """Mean ``(N, L)`` and variance ``(L,)`` of ``p(mid | obs)``."""
        precision = 1 / self.prior_var + (self.W**2).sum(0) / SIGMA**2
        var = 1 / precision
        centred = x - self.b - self.a @ self.W.T
        return self.a + var * (centred @ self.W) / SIGMA**2, var

    def posterior_top(self, x):
        """Mean ``(N, L)`` and variance ``(L,)`` of the marginal ``q(top | obs)``."""
        m, v = self.posterior_mid(x)
        c = self.alpha / self.prior_var
        return c * (m - self.a), c**2 * v + self.s1**2 / self.prior_var

    def guide(self, x):
        m, v = self.posterior_mid(x)
        with pyro.plate("rows", x.shape[0]):
            mid = pyro.sample("mid", dist.Normal(m, v.sqrt()).to_event(1))
            c = self.alpha / self.prior_var
            pyro.sample("top", dist.Normal(c * (mid - self.a), (self.s1**2 / self.prior_var).sqrt()).to_event(1))

    def log_marginal(self, x):
        cov = self.W @ torch.diag(self.prior_var) @ self.W.T + SIGMA**2 * torch.eye(D)
        return torch.distributions.MultivariateNormal(self.a @ self.W.T + self.b, cov).log_prob(x).double()

    def simulate(self, n, seed=1):
        g = torch.Generator().manual_seed(seed)
        top = torch.randn(n, L, generator=g)
        mid = self.alpha * top + self.a + self.s1 * torch.randn(n, L, generator=g)
        return mid @ self.W.T + self.b + SIGMA * torch.randn(n, D, generator=g)


class LabelledMixture:
    """``label ~ Categorical(pi)``, ``code ~ N(0, I)``, ``obs | label, code ~ N(W code + mu_label, SIGMA^2 I)``
    in the plate ``"items"``: ``p(obs) = sum_y pi_y N(mu_y, W W^T + SIGMA^2 I)`` in closed form.

    The guide is M2's shape, ``q(label | obs) q(code | obs, label)``, with the label enumerated
    (``config_enumerate``) and the exact ``p(code | obs, label)``; ``label_probs`` sets ``q(label|obs)``
    (``None``: the exact ``p(label | obs)``). ``semi_supervised`` adds M2's labelled rows: the label
    is observed where the boolean covariate ``known`` is True (``obs_mask``), summed out elsewhere.
    """

    def __init__(self, seed=0, classes=K):
        g = torch.Generator().manual_seed(seed)
        self.W = orthogonal(D, L, [2.0, 1.0, 0.5], seed)
        self.mu = 3 * torch.randn(classes, D, generator=g)
        self.pi = torch.softmax(torch.randn(classes, generator=g), 0)
        self.classes = classes
        self.label_probs = None

    def _component(self, label):
        return self.mu[label]

    def model(self, x, label=None, known=None):
        with pyro.plate("items", x.shape[0]):
            y = pyro.sample("label", dist.Categorical(self.pi), obs=label, obs_mask=known)
            code = pyro.sample("code", dist.Normal(torch.zeros(L), 1.0).to_event(1))
            pyro.sample("obs", dist.Normal(code @ self.W.T + self.mu[y], SIGMA).to_event(1), obs=x)

    def guide(self, x, label=None, known=None):
        with pyro.plate("items", x.shape[0]):
            probs = self.posterior_label(x) if self.label_probs is None else self.label_probs.expand(x.shape[0], -1)
            name = "label" if known is None else "label_unobserved"
            q_label = dist.Categorical(probs)
            if known is not None:
                q_label = q_label.mask(~known)
            y = pyro.sample(name, q_label, infer={"enumerate": "parallel"})
            if known is not None:
                y = torch.where(known, label, y)
            loc, sd = gaussian_posterior(self.W, SIGMA, x - self.mu[y])
            pyro.sample("code", dist.Normal(loc, sd).to_event(1))

    def log_joint_label(self, x):
        """``log p(obs, label=y)`` for every class, shape ``(N, classes)``."""
        return torch.stack(
            [self.pi[y].log() + gaussian_marginal(self.W, SIGMA, self.mu[y], x) for y in range(self.classes)], -1
        ).double()

    def posterior_label(self, x):
        return torch.softmax(self.log_joint_label(x), -1).float()

    def log_marginal(self, x):
        return torch.logsumexp(self.log_joint_label(x), -1)

    def simulate(self, n, seed=1):
        g = torch.Generator().manual_seed(seed)
        y = torch.multinomial(self.pi, n, replacement=True, generator=g)
        code = torch.randn(n, L, generator=g)
        return code @ self.W.T + self.mu[y] + SIGMA * torch.randn(n, D, generator=g), y
