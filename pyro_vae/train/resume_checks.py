"""Every field of a checkpoint's training state, checked against the model before any of it is used.

A checkpoint is a file a user hands us: a damaged or crafted one must end in a ``ValueError`` that
names the file and the field, never reach the optimiser (Adam's fused kernel trusts the shapes of
its moments: moments smaller than their parameter corrupt the heap), the random number generator,
the model's parameters or the run's history. :func:`check_training_state` is the one entry point;
it checks, in order:

* the counters: ``0 <= epoch``, one history row per finished epoch, ``best_epoch`` in
  ``1..epoch`` (or none, with ``best_val = -inf``), ``0 <= bad_epochs <= epoch``;
* the history rows: exactly the columns of :data:`~pyro_vae.train.state.HISTORY_COLUMNS`, real
  numbers, epochs ``1, 2, ...``;
* the RNG state: a ``uint8`` tensor of the size ``torch.get_rng_state()`` has;
* the best state: the model's own names, shapes and dtypes, finite values;
* the optimiser state: its groups' settings of the live optimiser's types (settings only one
  torch release knows are left to the optimiser), each parameter index once, and per parameter a scalar ``step`` (a whole number, at most ``epoch`` times the steps a
  run could take) and moments of the parameter's shape and dtype, finite (second moments ``>= 0``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["check_training_state"]


def _damaged(path: Any, field: str, what: str) -> ValueError:
    return ValueError(f"{path}: the training state is damaged ({field}: {what}); it cannot be resumed.")


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_training_state(
    training: Mapping[str, Any],
    path: Any,
    *,
    history_columns: Sequence[str],
    model_state: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer | None,
) -> None:
    """Check ``training`` (the checkpoint's training dict, field types already checked) against the
    model's ``model_state`` (its ``state_dict``) and the live ``optimizer``; ``ValueError`` naming
    ``path`` and the first bad field."""
    epoch = _check_counters(training, path)
    _check_rows(training["rows"], history_columns, path)
    _check_rng(training["rng_state"], path)
    if training["best_state"] is not None:
        _check_tensors(training["best_state"], model_state, path, "best_state")
    if optimizer is not None:
        _check_optimizer(training["optimizer"], optimizer, epoch, path)


def _check_counters(training: Mapping[str, Any], path: Any) -> int:
    epoch, rows, best_epoch = training["epoch"], training["rows"], training["best_epoch"]
    if epoch < 0:
        raise _damaged(path, "epoch", f"{epoch} is negative")
    if len(rows) != epoch:
        raise _damaged(path, "epoch", f"epoch {epoch:,} with {len(rows):,} history rows; each epoch adds one")
    best_val = training["best_val"]
    if best_epoch is None:
        if best_val != -math.inf:
            raise _damaged(path, "best_val", f"{best_val!r} without a best epoch")
    elif not 1 <= best_epoch <= epoch:
        raise _damaged(path, "best_epoch", f"{best_epoch} is not one of the {epoch} finished epochs")
    elif math.isnan(best_val) or math.isinf(best_val):
        raise _damaged(path, "best_val", f"{best_val!r} is not a finite validation ELBO")
    if not 0 <= training["bad_epochs"] <= epoch:
        raise _damaged(path, "bad_epochs", f"{training['bad_epochs']} is not in 0..{epoch}")
    return epoch


def _check_rows(rows: list, columns: Sequence[str], path: Any) -> None:
    for i, row in enumerate(rows):
        if set(row) != set(columns):
            raise _damaged(path, f"history row {i + 1}", f"columns {sorted(map(str, row))}, expected {list(columns)}")
        bad = [k for k in columns if not _is_real(row[k])]
        if bad:
            raise _damaged(path, f"history row {i + 1}", f"{bad} not numbers")
        if row["epoch"] != i + 1:
            raise _damaged(path, f"history row {i + 1}", f"its epoch is {row['epoch']!r}")


def _check_rng(rng_state: Any, path: Any) -> None:
    if rng_state is None:
        return
    reference = torch.get_rng_state()
    if rng_state.dtype != reference.dtype or rng_state.shape != reference.shape:
        raise _damaged(
            path, "rng_state", f"{rng_state.dtype} of shape {tuple(rng_state.shape)}, expected uint8 of shape "
            f"{tuple(reference.shape)}",
        )  # fmt: skip


def _check_tensors(values: Mapping[str, Any], reference: Mapping[str, torch.Tensor], path: Any, field: str) -> None:
    if set(values) != set(reference):
        missing, extra = sorted(set(reference) - set(values)), sorted(map(str, set(values) - set(reference)))
        raise _damaged(path, field, f"missing {missing[:3]}, unexpected {extra[:3]}")
    for name, want in reference.items():
        got = values[name]
        if not isinstance(got, torch.Tensor) or got.shape != want.shape or got.dtype != want.dtype:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise _damaged(path, f"{field}[{name!r}]", f"{shape}, expected {want.dtype} of shape {tuple(want.shape)}")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise _damaged(path, f"{field}[{name!r}]", "values that are not finite")


#: Per-parameter entries of ``torch.optim.Adam``'s state, besides ``step``.
_MOMENTS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
#: Most optimiser steps one epoch can take (a bound for a crafted ``step``, not a real limit).
_MAX_STEPS_PER_EPOCH = 10**9


def _check_optimizer(saved: Mapping[str, Any], optimizer: torch.optim.Optimizer, epoch: int, path: Any) -> None:
    live = optimizer.state_dict()
    groups, state = saved.get("param_groups"), saved.get("state")
    if not isinstance(groups, list) or not isinstance(state, dict) or set(saved) != {"state", "param_groups"}:
        raise _damaged(path, "optimizer", "not an optimiser state (state and param_groups)")
    if len(groups) != len(live["param_groups"]):
        raise _damaged(path, "optimizer", f"{len(groups)} parameter groups, this model has {len(live['param_groups'])}")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for i, (group, want) in enumerate(zip(groups, live["param_groups"])):
        # Another torch release may add or drop a setting (Adam fills in missing ones); a setting
        # both know must have this optimiser's kind.
        if not isinstance(group, dict) or "params" not in group:
            raise _damaged(path, f"optimizer group {i}", "not a parameter group")
        for key, value in group.items():
            if key != "params" and key in want and not _same_kind(value, want[key]):
                raise _damaged(
                    path, f"optimizer group {i} {key!r}", f"{value!r} where this optimiser has {want[key]!r}"
                )
        if group["params"] != want["params"]:
            raise _damaged(path, f"optimizer group {i} params", "parameter indices that do not match this model")
    for index, entry in state.items():
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(params):
            raise _damaged(path, "optimizer state", f"an entry for parameter {index!r} of {len(params)}")
        _check_entry(entry, params[index], index, epoch, path)


def _same_kind(value: Any, reference: Any) -> bool:
    if isinstance(reference, bool) or reference is None:
        return isinstance(value, bool) or value is None
    if _is_real(reference):
        return _is_real(value) and math.isfinite(value) and value >= 0
    if isinstance(reference, (tuple, list)):
        return (
            isinstance(value, (tuple, list))
            and len(value) == len(reference)
            and all(_same_kind(v, r) for v, r in zip(value, reference))
        )
    if isinstance(reference, torch.Tensor):
        return isinstance(value, torch.Tensor) and value.shape == reference.shape
    return type(value) is type(reference)


def _check_entry(entry: Any, param: torch.Tensor, index: int, epoch: int, path: Any) -> None:
    field = f"optimizer state of parameter {index}"
    if not isinstance(entry, dict) or not {"step", *_MOMENTS[:2]} <= set(entry) <= {"step", *_MOMENTS}:
        raise _damaged(path, field, "not Adam's step and moments")
    step = entry["step"]
    if not isinstance(step, torch.Tensor) or step.numel() != 1 or step.ndim > 1 or not step.is_floating_point():
        raise _damaged(path, f"{field} 'step'", "not a scalar count")
    count = float(step)
    if not (math.isfinite(count) and count >= 0 and count == int(count) and count <= epoch * _MAX_STEPS_PER_EPOCH):
        raise _damaged(path, f"{field} 'step'", f"{count!r} is not a count of steps for {epoch} epochs")
    for name in _MOMENTS:
        if name not in entry:
            continue
        moment = entry[name]
        if not isinstance(moment, torch.Tensor) or moment.shape != param.shape or moment.dtype != param.dtype:
            shape = tuple(moment.shape) if isinstance(moment, torch.Tensor) else type(moment).__name__
            raise _damaged(path, f"{field} {name!r}", f"{shape}, expected {param.dtype} of shape {tuple(param.shape)}")
        if not bool(torch.isfinite(moment).all()) or (name != "exp_avg" and bool((moment < 0).any())):
            raise _damaged(path, f"{field} {name!r}", "values that are not finite (or negative second moments)")
