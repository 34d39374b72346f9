"""Does a generator copy its training data? The three-sample test of Meehan, Chaudhuri & Dasgupta (2020).

A generated sample that is a slightly perturbed training point is closer to the training set than
a new data point would be. Meehan et al. ("A non-parametric test to detect data-copying in
generative models", AISTATS 2020) compare, cell by cell, the distances to the nearest training
point of held-out test points ``P_n`` and of generated samples ``Q_m``:

* the feature space is cut into cells by k-means on the training features;
* in each cell ``pi``, the Mann-Whitney ``U`` statistic of the two sets of distances, counting the
  pairs where the generated sample is the farther one, is standardised to

  .. math::

      Z_\\pi = \\frac{U_\\pi - m_\\pi n_\\pi / 2}{\\sqrt{m_\\pi n_\\pi (m_\\pi + n_\\pi + 1) / 12}},

  about ``N(0, 1)`` when the generated samples are as far from the training set as new data;
* the statistic is the average ``C_T = sum_pi w_pi Z_pi`` over the cells holding enough of both
  sets, weighted by their share of test points.

``C_T`` well below 0 means the samples sit closer to training points than new data does
(data-copying, here or in some cells); ``C_T`` above 0 means they sit farther (under-fitting).
Under the null, the cells' ``Z`` are independent and ``C_T ~ N(0, sum_pi w_pi^2)``, which gives
the one-sided p-value of copying reported here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from .._util.checks import positive_int, positive_number
from .._util.memory import MAX_MEMORY_MB

#: Quantiles reported for the nearest-training-neighbour distances.
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass(frozen=True)
class DataCopying:
    """Result of :func:`data_copying`.

    Attributes:
        statistic: ``C_T``, the test-share-weighted average of the cells' ``Z`` (negative: copying).
        p_value: one-sided p-value of ``C_T`` under "no copying" (small: evidence of copying).
        cells: per kept cell, its index, test and generated counts and ``Z``; cells with fewer
            than ``min_count`` points of either set are left out (and counted in ``cells_dropped``).
        generated_share_kept: share of the generated samples that fall in kept cells.
        nn_test, nn_generated: distance of every test point and every generated sample to its
            nearest training point (in the feature space).
        near_copies: share of generated samples closer to a training point than 99% of test
            points are (the 1% quantile of ``nn_test``); about 1% for a generator that does not copy.
    """

    statistic: float
    p_value: float
    cells: list[dict[str, float]]
    cells_dropped: int
    generated_share_kept: float
    nn_test: torch.Tensor = field(repr=False)
    nn_generated: torch.Tensor = field(repr=False)
    near_copies: float

    def summary(self) -> dict[str, Any]:
        def quantiles(values):
            return {f"q{round(100 * q)}": float(torch.quantile(values, q)) for q in QUANTILES}

        return {
            "statistic": self.statistic,
            "p_value": self.p_value,
            "cells_kept": len(self.cells),
            "cells_dropped": self.cells_dropped,
            "generated_share_kept": self.generated_share_kept,
            "near_copies": self.near_copies,
            "nn_test": quantiles(self.nn_test),
            "nn_generated": quantiles(self.nn_generated),
            "most_copying_cell_z": min((c["z"] for c in self.cells), default=float("nan")),
        }


def data_copying(
    train: Any,
    test: Any,
    generated: Any,
    *,
    classifier: Any = None,
    num_cells: int = 20,
    min_count: int = 20,
    seed: int = 0,
    max_memory_mb: float = MAX_MEMORY_MB,
) -> DataCopying:
    """Three-sample data-copying test of ``generated`` against ``train``, with ``test`` as the reference.

    Args:
        train, test, generated: points of shape ``(N, D)``; ``test`` must not have been used for
            training. Images when ``classifier`` is given, else feature vectors.
        classifier: a :class:`~pyro_vae.diagnostics.quality.FeatureClassifier` (or any object with
            ``features(x)``) mapping images to the space where distances are measured.
        num_cells: k-means cells over the training features.
        min_count: a cell enters the statistic only with at least this many test points and
            generated samples.
        seed: seeds k-means.

    Length: checks every argument, then the test's three distance computations and its statistic, in the order
    of Meehan et al.'s definition.
    """
    positive_int(num_cells, "num_cells")
    positive_int(min_count, "min_count")
    positive_number(max_memory_mb, "max_memory_mb")
    sets = {"train": train, "test": test, "generated": generated}
    feats = {}
    for name, values in sets.items():
        values = torch.as_tensor(values)
        if values.ndim < 2 or len(values) == 0:
            raise ValueError(f"{name} must have shape (N, D) with N >= 1, got {tuple(values.shape)}.")
        values = values.reshape(len(values), -1)
        feats[name] = (classifier.features(values) if classifier is not None else values).double()
        if not bool(torch.isfinite(feats[name]).all()):
            raise ValueError(f"{name} has non-finite values.")
    widths = {name: f.shape[1] for name, f in feats.items()}
    if len(set(widths.values())) != 1:
        raise ValueError(f"train, test and generated must have the same number of features, got {widths}.")
    if len(feats["train"]) < num_cells:
        raise ValueError(f"num_cells={num_cells} needs at least as many training points, got {len(feats['train'])}.")

    from sklearn.cluster import KMeans

    kmeans = KMeans(n_clusters=num_cells, n_init=1, random_state=seed).fit(feats["train"].numpy())
    cell_of = {name: torch.as_tensor(kmeans.predict(feats[name].numpy())) for name in ("test", "generated")}
    nn_test = _nearest_distance(feats["test"], feats["train"], max_memory_mb)
    nn_generated = _nearest_distance(feats["generated"], feats["train"], max_memory_mb)

    cells, dropped, kept_generated = [], 0, 0
    for cell in range(num_cells):
        test_d = nn_test[cell_of["test"] == cell]
        gen_d = nn_generated[cell_of["generated"] == cell]
        if len(test_d) < min_count or len(gen_d) < min_count:
            dropped += 1
            continue
        kept_generated += len(gen_d)
        cells.append(
            {
                "cell": cell,
                "test_count": len(test_d),
                "generated_count": len(gen_d),
                "z": _mann_whitney_z(test_d, gen_d),
            }
        )
    if not cells:
        raise ValueError(
            f"No cell holds {min_count} test points and {min_count} generated samples; lower num_cells "
            "or min_count, or pass more points."
        )
    weights = torch.tensor([c["test_count"] for c in cells], dtype=torch.float64)
    weights = weights / weights.sum()
    z = torch.tensor([c["z"] for c in cells], dtype=torch.float64)
    statistic = float((weights * z).sum())
    spread = float(weights.pow(2).sum().sqrt())
    p_value = 0.5 * math.erfc(-statistic / spread / math.sqrt(2))  # Phi(C_T / spread)
    threshold = torch.quantile(nn_test, 0.01)
    return DataCopying(
        statistic=statistic,
        p_value=p_value,
        cells=cells,
        cells_dropped=dropped,
        generated_share_kept=kept_generated / len(nn_generated),
        nn_test=nn_test,
        nn_generated=nn_generated,
        near_copies=float((nn_generated < threshold).double().mean()),
    )


def _mann_whitney_z(test_d: torch.Tensor, gen_d: torch.Tensor) -> float:
    """Standardised ``U``: pairs where the generated distance exceeds the test distance (ties count half)."""
    n, m = len(test_d), len(gen_d)
    values = torch.cat([test_d, gen_d])
    order = values.argsort()
    ranks = torch.empty_like(values)
    ranks[order] = torch.arange(1, n + m + 1, dtype=values.dtype)
    # Average ranks over ties.
    unique, inverse = torch.unique(values, return_inverse=True)
    if len(unique) < len(values):
        sums = torch.zeros(len(unique), dtype=values.dtype).index_add_(0, inverse, ranks)
        counts = torch.zeros(len(unique), dtype=values.dtype).index_add_(0, inverse, torch.ones_like(ranks))
        ranks = (sums / counts)[inverse]
    u = float(ranks[n:].sum()) - m * (m + 1) / 2
    return (u - m * n / 2) / math.sqrt(m * n * (m + n + 1) / 12)


def _nearest_distance(queries: torch.Tensor, points: torch.Tensor, max_memory_mb: float) -> torch.Tensor:
    """Euclidean distance from every query to its nearest point, in chunks of ``max_memory_mb``."""
    chunk = max(1, int(max_memory_mb * 2**20 / (8 * len(points))))
    return torch.cat(
        [torch.cdist(queries[i : i + chunk], points).min(dim=1).values for i in range(0, len(queries), chunk)]
    )
