"""Sample quality without external weights: Fréchet distance and precision/recall in the feature
space of a small classifier trained on the data set's own labels.

Inception features need downloaded weights and 299x299 colour images; for 28x28 grey images a
classifier trained here is both available and more relevant. :func:`feature_classifier` trains an
MLP on a data set's training split once and caches it (state dict and JSON configuration, loaded
with ``weights_only=True``); its penultimate layer is the feature map.

* :func:`frechet_distance` -- the Fréchet distance between Gaussians fitted to two feature sets
  (Heusel et al. 2017), ``|m_a - m_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^{1/2})``;
* :func:`precision_recall` -- improved precision and recall (Kynkäänniemi et al. 2019): the share
  of generated samples inside the real samples' k-nearest-neighbour balls, and vice versa.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .._util.checks import positive_number
from .._util.files import atomic_write, check_writable
from .._util.memory import MAX_MEMORY_MB, HeapGuard
from .._util.untrusted import bounded_int, parse_json, read_torch_file

CACHE_ENV = "PYRO_VAE_CACHE"


class FeatureClassifier(nn.Module):
    """MLP ``D -> hidden -> features -> classes``; :meth:`features` is the ``features``-wide layer."""

    def __init__(self, input_dim: int, num_classes: int, hidden: int = 256, features: int = 64):
        super().__init__()
        self.config = {"input_dim": input_dim, "num_classes": num_classes, "hidden": hidden, "features": features}
        self.body = nn.Sequential(nn.Linear(input_dim, hidden), nn.ReLU(), nn.Linear(hidden, features), nn.ReLU())
        self.head = nn.Linear(features, num_classes)
        self.test_accuracy: float | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    @torch.no_grad()
    def features(self, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """Feature vectors of shape ``(N, features)`` for images ``x`` of shape ``(N, D)``."""
        x = torch.as_tensor(x, dtype=torch.float32).reshape(len(x), -1)
        if x.shape[1] != self.config["input_dim"]:
            raise ValueError(f"Images have {x.shape[1]} pixels; the classifier expects {self.config['input_dim']}.")
        return torch.cat([self.body(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]).double()


def feature_classifier(
    dataset,
    *,
    epochs: int = 10,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    refresh: bool = False,
) -> FeatureClassifier:
    """The feature classifier of ``dataset`` (a :class:`pyro_vae.data.Dataset`), trained once and cached.

    The cache key is the data set's name, a fingerprint of its training images and labels, and
    the training settings, so a changed data set never reuses a stale classifier. The cache
    lives in ``$PYRO_VAE_CACHE`` or ``~/.cache/pyro_vae`` (``classifiers/``). Training uses the
    grey levels (not binarised), Adam 1e-3, batch 128, with a private seed.
    """
    train, test = dataset.train, dataset.test
    settings = {"epochs": epochs, "seed": seed, "hidden": 256, "features": 64, "version": 1}
    fingerprint = hashlib.sha256()
    fingerprint.update(train.x.numpy().tobytes())
    fingerprint.update(train.labels.numpy().tobytes())
    fingerprint.update(json.dumps(settings, sort_keys=True).encode())
    root = Path(cache_dir) if cache_dir else Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "pyro_vae"))
    path = root / "classifiers" / f"{dataset.name}-{fingerprint.hexdigest()[:16]}.pt"
    num_classes = int(train.labels.max()) + 1
    if path.is_file() and not refresh:
        return _load(path)
    check_writable(path.parent, "the classifier cache")  # before training, not after
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FeatureClassifier(train.x.shape[1], num_classes, settings["hidden"], settings["features"])
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(epochs):
            for rows in torch.randperm(len(train), generator=generator).split(128):
                loss = F.cross_entropy(model(train.x[rows]), train.labels[rows])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
    with torch.no_grad():
        model.test_accuracy = float((model(test.x).argmax(1) == test.labels).float().mean())
    payload = {
        "config": json.dumps({**model.config, "test_accuracy": model.test_accuracy}),
        "state_dict": model.state_dict(),
    }
    atomic_write(path, lambda handle: torch.save(payload, handle))
    return model


def _load(path: Path) -> FeatureClassifier:
    """The cached classifier, its sizes checked against caps and against its tensors before building."""
    fix = "; delete it or pass refresh=True."
    try:
        payload = read_torch_file(path, "cached classifier")
    except ValueError as error:
        raise ValueError(f"The cached classifier is unreadable: {error} Delete it or pass refresh=True.") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("state_dict"), dict):
        raise ValueError(f"The cached classifier {path} is damaged{fix}")
    config = parse_json(payload.get("config"), f"The cached classifier {path}")
    if not isinstance(config, dict) or set(config) != {
        "input_dim",
        "num_classes",
        "hidden",
        "features",
        "test_accuracy",
    }:
        raise ValueError(f"The cached classifier {path} has an unexpected configuration{fix}")
    sizes = {
        k: bounded_int(config[k], k, 2**24 if k == "input_dim" else 2**16, f"The cached classifier {path}")
        for k in ("input_dim", "num_classes", "hidden", "features")
    }
    state = payload["state_dict"]
    expected = {
        "body.0.weight": (sizes["hidden"], sizes["input_dim"]),
        "body.0.bias": (sizes["hidden"],),
        "body.2.weight": (sizes["features"], sizes["hidden"]),
        "body.2.bias": (sizes["features"],),
        "head.weight": (sizes["num_classes"], sizes["features"]),
        "head.bias": (sizes["num_classes"],),
    }
    found = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    if found != expected:
        raise ValueError(f"The cached classifier {path} holds tensors that do not match its configuration{fix}")
    model = FeatureClassifier(**sizes)
    model.load_state_dict(state)
    accuracy = config["test_accuracy"]
    model.test_accuracy = float(accuracy) if isinstance(accuracy, (int, float)) else None
    return model


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` ``(N, F)`` and ``b`` ``(M, F)``.

    ``tr((S_a S_b)^{1/2})`` is computed as the sum of square roots of the eigenvalues of the
    symmetric ``S_a^{1/2} S_b S_a^{1/2}``, which is stable in float64.
    """
    a, b = _features(a, "a"), _features(b, "b")
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = (vectors * values.clamp(min=0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    return float((mean_a - mean_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * cross)


@dataclass(frozen=True)
class PrecisionRecall:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with neighbourhood size ``k``."""

    precision: float
    recall: float
    k: int


def precision_recall(
    real: torch.Tensor, generated: torch.Tensor, *, k: int = 3, max_memory_mb: float = MAX_MEMORY_MB
) -> PrecisionRecall:
    """Precision: share of ``generated`` inside some real point's ball of radius its ``k``-th
    nearest real neighbour. Recall: the same with the roles swapped. Both in ``[0, 1]``.

    Distances are computed in blocks of rows sized so that a block's matrices stay within
    ``max_memory_mb`` whatever the number of points.
    """
    real, generated = _features(real, "real"), _features(generated, "generated")
    if not (isinstance(k, int) and 1 <= k < min(len(real), len(generated))):
        raise ValueError(f"k must be an integer from 1 to fewer than either set's size, got {k!r}.")
    positive_number(max_memory_mb, "max_memory_mb")
    return PrecisionRecall(
        precision=_coverage(real, generated, k, max_memory_mb), recall=_coverage(generated, real, k, max_memory_mb), k=k
    )


def _coverage(manifold: torch.Tensor, queries: torch.Tensor, k: int, max_memory_mb: float) -> float:
    """Share of ``queries`` inside the union of ``manifold``'s k-NN balls."""
    # A block of b rows holds b x N float64 distances plus as many temporaries of kthvalue/compare.
    chunk = max(1, int(max_memory_mb * 2**20 // (8 * 3 * len(manifold))))
    guard = HeapGuard(allowance_mb=2 * max_memory_mb + 64)
    radii = []
    for i in range(0, len(manifold), chunk):
        radii.append(torch.cdist(manifold[i : i + chunk], manifold).kthvalue(k + 1, dim=1).values)  # +1: itself
        guard.check()
    radii = torch.cat(radii)
    inside = []
    for i in range(0, len(queries), chunk):
        inside.append((torch.cdist(queries[i : i + chunk], manifold) <= radii).any(dim=1))
        guard.check()
    return float(torch.cat(inside).double().mean())


def _features(values: torch.Tensor, name: str) -> torch.Tensor:
    values = torch.as_tensor(values).double()
    if values.ndim != 2 or len(values) < 2:
        raise ValueError(f"{name} must have shape (N, F) with N >= 2, got {tuple(values.shape)}.")
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"{name} contains non-finite values.")
    return values


def sample_quality(classifier: FeatureClassifier, real: torch.Tensor, generated: torch.Tensor, *, k: int = 3) -> dict:
    """Fréchet distance, precision and recall of ``generated`` images against ``real`` images."""
    real_features, generated_features = classifier.features(real), classifier.features(generated)
    pr = precision_recall(real_features, generated_features, k=k)
    return {
        "frechet_distance": frechet_distance(real_features, generated_features),
        "precision": pr.precision,
        "recall": pr.recall,
        "k": k,
        "num_real": len(real),
        "num_generated": len(generated),
    }


# The data-copying test lives in its own module; it belongs to the quality toolbox.
from .copying import DataCopying, data_copying  # noqa: E402

__all__ = [
    "DataCopying",
    "FeatureClassifier",
    "PrecisionRecall",
    "data_copying",
    "feature_classifier",
    "frechet_distance",
    "precision_recall",
    "sample_quality",
]
