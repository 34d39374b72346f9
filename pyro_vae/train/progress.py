"""What a user sees while training: a progress bar, one line per epoch, or nothing."""

from __future__ import annotations

import importlib.util
import sys

#: Lines at most that ``progress="summary"`` prints for a whole run (and one more for its last epoch).
SUMMARY_LINES = 10


class Progress:
    """``mode``: ``True`` a bar (tqdm), ``"lines"`` one line per epoch on standard error,
    ``"summary"`` a line every tenth of the epochs (and the last), ``False`` nothing; ``None`` a bar
    when standard error is a terminal."""

    def __init__(self, mode: bool | str | None, total: int, initial: int = 0):
        if mode not in (None, True, False, "lines", "summary"):
            raise ValueError(f'progress must be True, False, None, "lines" or "summary", got {mode!r}.')
        # tqdm.auto draws a notebook widget in Jupyter, which needs ipywidgets (and warns without it)
        if importlib.util.find_spec("ipywidgets") is not None:
            from tqdm.auto import tqdm
        else:
            from tqdm.std import tqdm

        show = sys.stderr.isatty() if mode is None else mode is True
        self.total = total
        self.every = 1 if mode == "lines" else max(1, total // SUMMARY_LINES) if mode == "summary" else 0
        self.unshown: dict | None = None
        self.bar = tqdm(total=total, initial=initial, disable=not show, unit="epoch", leave=False)

    def epoch_done(self, row: dict) -> None:
        self.bar.update(1)
        self.bar.set_postfix(train=f"{row['train_elbo']:.2f}", val=f"{row['val_elbo']:.2f}")
        if self.every and (row["epoch"] % self.every == 0 or row["epoch"] == self.total):
            self._print(row)
            self.unshown = None
        elif self.every:
            self.unshown = row

    def _print(self, row: dict) -> None:
        print(
            f"epoch {row['epoch']}/{self.total}: train {row['train_elbo']:.3f}, validation ELBO "
            f"{row['val_elbo']:.3f} per point, {row['seconds']:.1f} s",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self.unshown is not None:  # a run that stopped early shows where it stopped
            self._print(self.unshown)
        self.bar.close()
