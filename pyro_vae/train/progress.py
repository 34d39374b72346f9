"""What a user sees while training: a progress bar, one line per epoch, or nothing."""

from __future__ import annotations

import sys


class Progress:
    """``mode``: ``True`` a bar (tqdm), ``"lines"`` one line per epoch on standard error, ``False``
    nothing; ``None`` a bar when standard error is a terminal."""

    def __init__(self, mode: bool | str | None, total: int, initial: int = 0):
        if mode not in (None, True, False, "lines"):
            raise ValueError(f'progress must be True, False, None or "lines", got {mode!r}.')
        from tqdm.auto import tqdm

        show = sys.stderr.isatty() if mode is None else mode is True
        self.lines, self.total = mode == "lines", total
        self.bar = tqdm(total=total, initial=initial, disable=not show, unit="epoch", leave=False)

    def epoch_done(self, row: dict) -> None:
        self.bar.update(1)
        self.bar.set_postfix(train=f"{row['train_elbo']:.2f}", val=f"{row['val_elbo']:.2f}")
        if self.lines:
            print(
                f"epoch {row['epoch']}/{self.total}: train {row['train_elbo']:.3f}, validation ELBO "
                f"{row['val_elbo']:.3f} per point, {row['seconds']:.1f} s",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        self.bar.close()
