"""Data-parallel training on torch.distributed (gloo, 2 CPU processes started here)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp

from helpers import distributed_worker as worker

pytestmark = [
    pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in"),
    pytest.mark.slow,  # several processes each
]
TRAIN = [
    "-m",
    "pyro_vae.cli",
    "train",
    "--data",
    "digits",
    "--binarize",
    "dynamic",
    "--latent-dim",
    "2",
    "--hidden",
    "16",
    "--batch-size",
    "64",
]


def torchrun(processes, *args, **popen):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def kill_processes_mentioning(text):
    """SIGKILL every process whose command line contains ``text`` (read from /proc)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if text.encode() in handle.read():
                    os.kill(int(entry), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


def test_one_step_on_two_ranks_equals_one_step_on_the_union_batch(tmp_path):
    mp.spawn(worker.step_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    vae, x = worker.model_and_data()
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    worker.one_step(vae, x, torch.arange(2 * worker.B), distributed=False)
    moved = False
    for name, value in vae.state_dict().items():
        assert torch.equal(ranks[0][name], ranks[1][name]), name
        assert torch.allclose(ranks[0][name], value, atol=1e-6, rtol=1e-5), name
        moved |= not torch.equal(value, before[name])
    assert moved  # the step changed the parameters: the comparison is not of untouched values


def test_two_process_training_through_the_command_line_ends_in_sync(tmp_path):
    run = torchrun(2, *TRAIN, "--epochs", "3", "--out", str(tmp_path / "run"))
    output, _ = run.communicate(timeout=300)
    assert run.returncode == 0, output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["parameter_difference_across_ranks"] == 0.0
    assert summary["epochs_run"] == 3
    assert "on 2 processes" in output


def test_a_killed_two_process_run_resumes_on_one_process(tmp_path):
    out = tmp_path / "run"
    run = torchrun(2, *TRAIN, "--epochs", "100000", "--out", str(out), start_new_session=True)
    checkpoint = out / "checkpoint.pt"
    deadline = time.time() + 240
    while time.time() < deadline:
        if checkpoint.exists():
            try:
                if torch.load(checkpoint, weights_only=True)["training"]["epoch"] >= 2:
                    break
            except Exception:  # the file is being replaced; read it again
                pass
        time.sleep(0.5)
    # torchrun starts its workers in sessions of their own: kill every process of this run.
    os.killpg(run.pid, signal.SIGKILL)
    kill_processes_mentioning(str(out))
    run.communicate(timeout=60)
    done = torch.load(checkpoint, weights_only=True)["training"]
    resumed = subprocess.run(
        [sys.executable, *TRAIN, "--epochs", str(done["epoch"] + 2), "--out", str(out), "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    history = (out / "history.csv").read_text().strip().splitlines()
    assert len(history) == 1 + done["epoch"] + 2
    final = torch.load(checkpoint, weights_only=True)["training"]
    assert final["rows"][: done["epoch"]] == done["rows"]  # the epochs before the kill are kept as they were


def test_a_program_steps_on_two_ranks_as_on_the_union_batch(tmp_path):
    """A hand-written program's store parameters (no module owns them) get averaged gradients too."""
    mp.spawn(worker.program_step_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"program{r}.pt", weights_only=True) for r in range(2)]
    _, x = worker.model_and_data()
    union = worker.program_step(x, torch.arange(2 * worker.B), distributed=False)
    assert set(union) == {"decoder$$$weight", "decoder$$$bias", "encoder$$$weight", "encoder$$$bias", "offset"}
    for name, value in union.items():
        assert torch.equal(ranks[0][name], ranks[1][name]), name
        assert torch.allclose(ranks[0][name], value, atol=1e-6, rtol=1e-5), name
    assert not torch.equal(union["offset"], torch.zeros(worker.L))  # the step moved the store's own parameter
