"""Command line: ``pyro-vae demo | train | sample | evaluate | compare | report``.

pyro-vae demo                          # train on the embedded digits, write figures to runs/demo
pyro-vae train --data fashion-mnist --binarize dynamic --latent-dim 50 --out runs/fmnist
pyro-vae train --data table.csv --likelihood normal --out runs/table     # a table of N rows
pyro-vae train --data cells.h5ad --layer counts --covariate-columns batch --likelihood negative_binomial --size-factors --out runs/cells
pyro-vae sample runs/fmnist --source subset --label 7 --num 64
pyro-vae evaluate runs/fmnist          # NLL, ELBO surgery, active units, Pareto k -> JSON
pyro-vae compare runs/a runs/b --plot comparison.png
pyro-vae report runs/fmnist            # diagnostics, holes and samples from every source
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

from .._util.files import WriteError
from .._util.memory import MAX_MEMORY_MB
from ..data import loading as data_module
from ..io.runs import load_run
from ..likelihoods import LIKELIHOODS
from ..train.settings import TrainSettings
from ..vae.guides import GUIDES
from ..vae.model import INPUT_TRANSFORMS
from ..vae.priors import PRIORS
from .commands import SOURCE_NAMES, run_demo, run_sample, run_train
from .evaluation import run_compare, run_evaluate
from .imputation import run_impute
from .report import run_report

__all__ = ["build_parser", "load_run", "main"]

DEBUG_HELP = "show the traceback of an error instead of one line"


def main(argv: list[str] | None = None) -> int:
    """Run one command. Any error ends in one line, ``pyro-vae COMMAND: error: ...``, and exit status 2;
    ``--debug`` shows the traceback instead."""
    args = build_parser().parse_args(argv)
    # The options written out, so that a default that depends on the data (--mask-missing's bound)
    # gives way to an explicit choice.
    args.given_flags = {
        arg.split("=", 1)[0] for arg in (sys.argv[1:] if argv is None else argv) if arg.startswith("--")
    }
    import matplotlib

    matplotlib.use("Agg")  # the command line draws files, never windows
    commands = {
        "demo": lambda a: run_demo(Path(a.out), epochs=a.epochs, seed=a.seed, overwrite=a.overwrite),
        "train": run_train,
        "sample": run_sample,
        "evaluate": run_evaluate,
        "compare": run_compare,
        "report": run_report,
        "impute": run_impute,
    }
    try:
        commands[args.command](args)
    except KeyboardInterrupt:
        print(f"pyro-vae {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        print(f"pyro-vae {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    return 0


def _one_line(error: BaseException) -> str:
    """The error's message on one line; an error the library did not expect names its type and asks
    for ``--debug``."""
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, (ValueError, FileNotFoundError, TypeError, FloatingPointError, PermissionError, WriteError)):
        return text
    return f"{type(error).__name__}: {text} (rerun with --debug for the traceback)"


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated column names or positions, got {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    """The ``pyro-vae`` parser: one sub-command per task, each built by its own function below."""
    # Options are written out in full (no abbreviations): a default that gives way to an explicit
    # choice (--mask-missing's bound) reads which options the command line names.
    parser = argparse.ArgumentParser(
        prog="pyro-vae", description="Variational autoencoders as Pyro programs.", allow_abbrev=False
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (
        _demo_command,
        _train_command,
        _sample_command,
        _evaluate_command,
        _compare_command,
        _report_command,
        _impute_command,
    ):
        add(partial(_command, commands))
    return parser


def _command(commands, name: str, text: str) -> argparse.ArgumentParser:
    sub = commands.add_parser(
        name, help=text, description=text, formatter_class=argparse.ArgumentDefaultsHelpFormatter, allow_abbrev=False
    )
    # Also after the command's name; set only when given, so `pyro-vae --debug train` keeps it.
    sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return sub


def _demo_command(command) -> None:
    """``demo``: the embedded digits, end to end."""
    demo = command("demo", "train on the embedded digits and write a run folder with figures")
    demo.add_argument("--out", default="runs/demo", help="run folder to write")
    demo.add_argument("--epochs", type=int, default=400, help="most epochs (early stopping may end sooner)")
    demo.add_argument("--seed", type=int, default=0, help="seeds the split, the initialisation and training")
    demo.add_argument("--overwrite", action="store_true", help="replace a run already in --out")


def _train_command(command) -> None:
    """``train``: what to read, which model, how to train, where to write."""
    train = command("train", "train a VAE and write a run folder")
    _data_options(train)
    _model_options(train)
    _network_options(train)
    TrainSettings.add_arguments(train)
    train.add_argument("--device", default="cpu", help="torch device to train on: cpu, cuda, cuda:1, ...")
    train.add_argument("--out", required=True, help="run folder to write")
    continuing = train.add_mutually_exclusive_group()
    continuing.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    continuing.add_argument("--overwrite", action="store_true", help="replace a run already in --out")


def _data_options(train) -> None:
    """``train``'s options on the data and how to read it."""
    train.add_argument(
        "--data",
        default="digits",
        help="'digits', 'fashion-mnist', 'mnist', a folder of IDX files, a .npy/.csv table (N, D), or an AnnData "
        ".h5ad file (cells by genes; label and covariate columns are obs columns)",
    )
    train.add_argument(
        "--layer",
        default=None,
        help="the layer of an .h5ad file to train on (e.g. counts; default: its X)",
    )
    train.add_argument(
        "--binarize",
        default="auto",
        choices=("auto", *data_module.BINARIZE_MODES),
        help="binarise images once ('fixed') or afresh each epoch ('dynamic'); 'auto' binarises dynamically "
        "where a Bernoulli likelihood meets values in [0, 1] that are not 0/1, and says so",
    )
    train.add_argument(
        "--columns",
        type=_names,
        default=None,
        help="a table's feature columns, comma-separated header names or 0-based positions (default: every "
        "column but the label, leaving out a row index)",
    )
    train.add_argument(
        "--label-column",
        default=None,
        help="a table's column of class labels (name or position): whole numbers, or values read as classes",
    )
    train.add_argument(
        "--mask-missing",
        action="store_true",
        help="read a table's empty and NA cells (NaN in .npy and .h5ad) as missing: train on the observed "
        "entries, with an encoder that sees the mask and the importance-weighted bound of fit's masked "
        "defaults (unless --elbo or --num-particles is given); docs/missing-data.md",
    )
    train.add_argument(
        "--covariate-columns",
        type=_names,
        default=None,
        help="a table's categorical covariate columns (a batch, a donor), comma-separated names or positions: "
        "one-hot, given to encoder and decoder as y, never features",
    )
    train.add_argument(
        "--values",
        default="unit",
        choices=data_module.VALUE_MODES,
        help="pixels scaled to [0, 1] or as integer levels (for count and level likelihoods)",
    )


def _model_options(train) -> None:
    """``train``'s options on the model: likelihood, prior, guide, networks."""
    train.add_argument(
        "--likelihood", default="bernoulli", choices=sorted(LIKELIHOODS), help="observation model p(x|z)"
    )
    train.add_argument(
        "--likelihood-kwargs",
        type=_json_object,
        default={},
        help="likelihood options as a JSON object, e.g. '{\"num_levels\": 256}'",
    )
    train.add_argument(
        "--size-factors",
        action="store_true",
        help="count likelihoods (poisson, negative_binomial, zero_inflated_negative_binomial): each row's "
        "total count as its library size, mean l_i * softmax(raw_i) as in scVI; the same as "
        "--likelihood-kwargs '{\"size_factors\": true}'",
    )
    train.add_argument("--prior", default="normal", choices=sorted(PRIORS), help="prior p(z)")
    train.add_argument(
        "--prior-kwargs",
        type=_json_object,
        default={},
        help="prior options as a JSON object, e.g. '{\"num_components\": 50}'",
    )
    train.add_argument(
        "--guide",
        default="normal",
        choices=sorted(GUIDES),
        help="family of q(z|x): a diagonal Gaussian, or an inverse autoregressive flow on top of it",
    )
    train.add_argument(
        "--guide-kwargs",
        type=_json_object,
        default={},
        help="guide options as a JSON object, e.g. '{\"num_flows\": 2}'",
    )
    train.add_argument(
        "--standardize",
        action="store_true",
        help="model (x - mean) / std per feature, with log-densities kept in the data's units "
        "(real-valued likelihoods: normal, laplace, student_t)",
    )
    train.add_argument(
        "--input-transform",
        default="auto",
        choices=("auto", *INPUT_TRANSFORMS),
        help="what the encoder reads of x: 'log1p' (log(1 + x)), 'none', or 'auto': log1p for the unbounded "
        "count likelihoods (poisson, negative_binomial, zero_inflated_negative_binomial), else none",
    )


def _network_options(train) -> None:
    """``train``'s options on the encoder and decoder networks."""
    train.add_argument("--latent-dim", type=int, default=2, help="dimension L of z")
    train.add_argument(
        "--hidden",
        type=int,
        nargs="*",
        default=None,
        help="hidden layer widths of encoder and decoder (default: one layer of 400, of 256 for the count likelihoods)",
    )
    train.add_argument(
        "--activation",
        default="softplus",
        choices=["softplus", "relu", "tanh", "elu", "gated"],
        help="non-linearity of the hidden layers; 'gated' makes them gated dense layers",
    )


def _sample_command(command) -> None:
    """``sample``: draws from a trained run."""
    sample = command("sample", "draw images from a trained run")
    sample.add_argument("run", help="a run folder written by train or demo")
    sample.add_argument(
        "--source",
        choices=SOURCE_NAMES,
        default="prior",
        help="where z comes from: the prior, the aggregate posterior of the training data, a "
        "Gaussian mixture fitted to it, or the aggregate posterior of one label's points",
    )
    sample.add_argument("--label", type=int, default=None, help="with --source subset: the label to draw")
    sample.add_argument(
        "--components",
        type=int,
        default=10,
        help="with --source mixture and no mixture saved with the model: components to fit",
    )
    sample.add_argument("--num", type=int, default=64, help="number of images")
    sample.add_argument("--seed", type=int, default=0, help="seeds every draw")
    sample.add_argument("--device", default="cpu", help="torch device: cpu, cuda, ...")
    sample.add_argument(
        "--out",
        default=None,
        help="figure path (default RUN/samples-SOURCE.png for images, .csv for tables); the means are also written as .npy beside it",
    )


def _evaluate_command(command) -> None:
    """``evaluate``: held-out estimates of one run."""
    evaluate = command("evaluate", "held-out log-likelihood and posterior diagnostics of a run")
    evaluate.add_argument("run", help="a run folder written by train or demo")
    _evaluation_options(evaluate)
    evaluate.add_argument("--out", default=None, help="JSON path (default RUN/evaluation.json)")


def _compare_command(command) -> None:
    """``compare``: runs ranked on the same data."""
    comparison = command("compare", "rank runs by held-out log p(x), in the layout of arviz.compare")
    comparison.add_argument("runs", nargs="+", help="two or more run folders trained on the same data")
    _evaluation_options(comparison)
    comparison.add_argument("--plot", default="comparison.png", help="PNG path of the comparison plot")
    comparison.add_argument("--csv", default=None, help="also write the table as CSV")


def _report_command(command) -> None:
    """``report``: the figures and JSON of one run."""
    report = command("report", "diagnostics, holes and samples from every source, in one folder of figures and JSON")
    report.add_argument("run", help="a run folder written by train or demo")
    report.add_argument("--out", default=None, help="folder to write (default RUN/report)")
    report.add_argument("--num-particles", type=int, default=200, help="importance samples per test point")
    report.add_argument("--max-points", type=int, default=500, help="test points to evaluate")
    report.add_argument("--num-samples", type=int, default=10_000, help="draws for the hole diagnostics")
    report.add_argument("--num", type=int, default=50, help="images per sample grid")
    report.add_argument(
        "--components", type=int, default=10, help="components of the fitted mixture (if none is saved)"
    )
    report.add_argument("--seed", type=int, default=0, help="seeds every draw")
    report.add_argument("--device", default="cpu", help="torch device: cpu, cuda, ...")


def _impute_command(command) -> None:
    """``impute``: the missing entries of a table, filled by a run's model."""
    impute = command("impute", "fill a table's missing entries (empty, NA or NaN) with a run's model")
    impute.add_argument("run", help="a run folder written by train")
    impute.add_argument("--data", required=True, help="a .csv, .npy or .h5ad file with missing entries")
    impute.add_argument("--out", default=None, help="CSV of the imputed means (default DATA-imputed.csv)")
    impute.add_argument("--num-particles", type=int, default=1000, help="importance samples per row")
    impute.add_argument("--num-samples", type=int, default=10, help="imputations drawn per row (saved as .npy)")
    impute.add_argument("--seed", type=int, default=0, help="seeds every draw")
    impute.add_argument("--overwrite", action="store_true", help="replace the output files")


def _evaluation_options(parser) -> None:
    parser.add_argument("--split", choices=("test", "val"), default="test", help="held-out split to evaluate on")
    parser.add_argument(
        "--num-particles",
        type=int,
        default=None,
        help="importance samples per data point (default 1000); with --method ais, AIS chains per point "
        "(default 16, each --ais-steps x 11 gradient evaluations)",
    )
    parser.add_argument(
        "--method",
        choices=("importance", "ais"),
        default="importance",
        help="estimator of log p(x): importance sampling from the guide, or annealed importance sampling",
    )
    parser.add_argument("--ais-steps", type=int, default=500, help="AIS temperatures (with --method ais)")
    parser.add_argument("--max-points", type=int, default=None, help="evaluate only the first N points of the split")
    parser.add_argument("--max-memory-mb", type=float, default=MAX_MEMORY_MB, help="rough bound on one chunk's memory")
    parser.add_argument("--seed", type=int, default=0, help="seeds the importance samples")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, ...")


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON ({error}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"num_levels\": 256}}', got {text!r}")
    return value


if __name__ == "__main__":
    sys.exit(main())
