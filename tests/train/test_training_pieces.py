"""Each piece of fit, alone: the objective step, warm-up, epoch data, validation, early stopping, progress."""

import copy

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO

import pyro_vae
from pyro_vae.train import (
    EarlyStopping,
    KLWarmup,
    ObjectiveStep,
    Progress,
    Validation,
    epoch_order,
    epoch_values,
    make_objective,
)


def small_vae(seed=0):
    torch.manual_seed(seed)
    return pyro_vae.VAE(6, 2, hidden_sizes=(5,))


def binary(n=20, seed=0):
    return torch.bernoulli(torch.full((n, 6), 0.4), generator=torch.Generator().manual_seed(seed))


def test_objective_step_is_differentiable_loss_then_adam():
    vae, x = small_vae(), binary()
    reference = copy.deepcopy(vae)
    step = ObjectiveStep(vae, vae.model, vae.guide, make_objective("trace", 1), lr=0.01)
    optimizer = torch.optim.Adam(reference.parameters(), lr=0.01)
    with pyro.get_param_store().scope():
        torch.manual_seed(3)
        value = step(x)
    with pyro.get_param_store().scope():
        torch.manual_seed(3)
        loss = Trace_ELBO().differentiable_loss(reference.model, reference.guide, x)
        loss.backward()
        optimizer.step()
    assert value == pytest.approx(float(loss.detach()))
    for a, b in zip(vae.parameters(), reference.parameters()):
        assert torch.equal(a, b)
    assert set(step.state_dict()) == {"state", "param_groups"}


def test_adam_uses_the_fused_kernel_and_a_checkpoint_keeps_the_kernel_it_was_written_with():
    vae = small_vae()
    step = ObjectiveStep(vae, vae.model, vae.guide, make_objective("trace", 1), lr=0.01)
    assert step.optimizer.param_groups[0]["fused"] is True
    written = torch.optim.Adam(vae.parameters(), lr=0.01, foreach=True)  # an older run's optimiser
    step.load_state_dict(written.state_dict())
    assert step.optimizer.param_groups[0]["foreach"] is True and not step.optimizer.param_groups[0]["fused"]


def test_objective_step_refuses_parameters_outside_the_module():
    vae, x = small_vae(), binary()

    def guide(x, **kwargs):
        shift = pyro.param("stray_shift", torch.zeros(2))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(shift, 1.0).to_event(1))

    step = ObjectiveStep(vae, vae.model, guide, make_objective("trace", 1), lr=0.01)
    with pyro.get_param_store().scope(), pytest.raises(ValueError, match="outside the VAE module.*stray_shift"):
        step(x)


def test_unknown_objectives_are_refused():
    with pytest.raises(ValueError, match="elbo must be one of"):
        make_objective("renyi", 1)


def test_kl_warmup_rises_linearly_then_stays_at_one():
    warmup = KLWarmup(epochs=2, steps_per_epoch=4)
    assert [warmup.weight(0, s) for s in range(4)] == [1 / 8, 2 / 8, 3 / 8, 4 / 8]
    assert warmup.weight(1, 3) == 1.0 and warmup.weight(5, 0) == 1.0
    assert KLWarmup(0, 4).weight(0, 0) == 1.0


def test_epoch_data_depends_on_seed_and_epoch_only():
    order = epoch_order(seed=1, epoch=3, num_data=50)
    assert sorted(order.tolist()) == list(range(50))
    assert torch.equal(order, epoch_order(1, 3, 50)) and not torch.equal(order, epoch_order(1, 4, 50))
    grey = torch.full((30, 6), 0.5)
    assert torch.equal(epoch_values(grey, False, 1, 3), grey)
    drawn = epoch_values(grey, True, 1, 3)
    assert set(drawn.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(drawn, epoch_values(grey, True, 1, 3)) and not torch.equal(drawn, epoch_values(grey, True, 1, 4))


def test_early_stopping_keeps_the_best_epoch_and_stops_after_patience():
    vae = small_vae()
    stopping = EarlyStopping(patience=2)
    decisions = []
    for epoch, value in enumerate([-10.0, -9.0, -9.5, -9.2, -8.0], start=1):
        with torch.no_grad():
            next(vae.parameters()).fill_(epoch)
        decisions.append(stopping.observe(value, epoch, vae))
        if decisions[-1]:
            break
    assert decisions == [False, False, False, True]
    assert stopping.best_epoch == 2 and stopping.best_val == -9.0
    assert float(next(iter(stopping.best_state.values())).flatten()[0]) == 2.0
    assert not EarlyStopping(None).observe(-1.0, 1, vae)


def test_validation_equals_mean_elbo():
    vae, x = small_vae(), binary(30)
    program = vae.as_program()
    data = program.data(x)
    assert Validation(program, data, seed=4, batch_size=7)() == pytest.approx(
        pyro_vae.mean_elbo(vae, x, seed=4, batch_size=7)
    )


def test_validation_with_particles_is_the_importance_weighted_bound_rising_to_the_exact_log_marginal():
    from helpers.ppca import log_marginal, simulate

    W, b, x = simulate(200, 6, 2, 0.5)
    vae = pyro_vae.VAE(6, 2, hidden_sizes=(), likelihood="normal", likelihood_kwargs={"scale": 0.5})
    with torch.no_grad():  # the true decoder, an untrained (inexact) encoder
        vae.decoder.net[0].weight.copy_(W)
        vae.decoder.net[0].bias.copy_(b)
    exact = log_marginal(W, b, 0.5, x).mean().item()
    program = vae.as_program()
    data = program.data(x)
    value = {k: Validation(program, data, seed=0, batch_size=64, num_particles=k)() for k in (1, 10, 1000)}
    assert value[1] == pytest.approx(pyro_vae.mean_elbo(vae, x, seed=0, batch_size=64))
    assert value[1] < value[10] < value[1000] < exact
    assert exact - value[1000] < 0.1 * (exact - value[1])


def test_fit_with_an_importance_weighted_objective_validates_on_that_bound():
    vae, x = small_vae(), binary(60)
    val = binary(25, seed=1)
    history = pyro_vae.fit(
        vae,
        x,
        val=val,
        epochs=2,
        batch_size=20,
        elbo="iwae",
        num_particles=4,
        seed=3,
        restore_best=False,
        progress=False,
    )
    program = vae.as_program()
    bound = Validation(program, program.data(val), seed=3, batch_size=128, num_particles=4)()
    assert history.rows[-1]["val_elbo"] == pytest.approx(bound)
    assert bound > Validation(program, program.data(val), seed=3, batch_size=128)()


class _OneRankOfTwo:
    """A process group seen from one rank, whose sum over ranks is this rank's own values."""

    active, world_size = True, 2

    def __init__(self, rank):
        self.rank = rank

    def sum(self, *values):
        return values


def test_validation_in_a_process_group_gives_each_point_its_own_row_of_a_per_point_table():
    table = torch.linspace(0.0, 4.0, 9)  # one prior mean per data point, looked up by position

    def model(x, indices=None, num_data=None):
        with pyro.plate("data", num_data or len(x), subsample=indices) as rows:
            z = pyro.sample("z", dist.Normal(table[rows], 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x, indices=None, num_data=None):  # the exact posterior: every weight is p(x_i)
        with pyro.plate("data", num_data or len(x), subsample=indices) as rows:
            pyro.sample("z", dist.Normal((table[rows] + x) / 2, 0.5**0.5))

    x = torch.zeros(9)
    program = pyro_vae.Program(model, guide)
    data = program.data(x)
    exact = dist.Normal(table, 2**0.5).log_prob(x).mean().item()
    assert Validation(program, data, seed=0, batch_size=4)() == pytest.approx(exact, abs=1e-5)
    parts = [Validation(program, data, seed=0, batch_size=4, group=_OneRankOfTwo(rank)) for rank in (0, 1)]
    total = sum(part() * len(part.data) for part in parts)
    assert total / len(x) == pytest.approx(exact, abs=1e-5)


def test_progress_prints_one_line_per_epoch(capsys):
    shown = Progress("lines", total=3)
    shown.epoch_done({"epoch": 1, "train_elbo": -5.0, "val_elbo": -6.0, "seconds": 0.5})
    shown.close()
    assert "epoch 1/3: train -5.000, validation ELBO -6.000 per point, 0.5 s" in capsys.readouterr().err
    with pytest.raises(ValueError, match="progress must be"):
        Progress("bar", total=3)


def _twins_trained(x, epochs, **options):
    vae = pyro_vae.VAE(x.shape[1], 3, hidden_sizes=(16,), **options.pop("model", {}))
    twins = [copy.deepcopy(vae), copy.deepcopy(vae)]
    settings = dict(epochs=epochs, batch_size=64, kl_warmup_epochs=2, progress=False, **options)
    histories = [pyro_vae.fit(twins[0], x, **settings), pyro_vae.fit(twins[1], x, jit=True, **settings)]
    return vae, twins, histories


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_the_compiled_objective_trains_as_the_eager_one():
    x = (torch.rand(530, 20, generator=torch.Generator().manual_seed(0)) < 0.3).float()  # a partial last batch
    _, (eager, compiled), (h_eager, h_compiled) = _twins_trained(x, 3)
    for a, b in zip(h_eager.rows, h_compiled.rows):  # the same draws, warm-up weights included
        assert a["train_elbo"] == pytest.approx(b["train_elbo"], rel=1e-6)
    for a, b in zip(eager.state_dict().values(), compiled.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_the_compiled_objective_takes_covariates_and_resumes_exactly(tmp_path):
    x = (torch.rand(200, 12, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    y = pyro_vae.data.one_hot(torch.arange(200) % 3, 3)
    start, (eager, compiled), _ = _twins_trained(x, 3, covariates={"y": y}, model={"covariate_dim": 3})
    assert all(
        torch.allclose(a, b, atol=1e-5) for a, b in zip(eager.state_dict().values(), compiled.state_dict().values())
    )
    first = copy.deepcopy(start)
    options = dict(
        covariates={"y": y}, batch_size=64, kl_warmup_epochs=2, progress=False, jit=True, checkpoint=tmp_path / "run.pt"
    )
    pyro_vae.fit(first, x, epochs=2, **options)
    resumed = copy.deepcopy(start)
    pyro_vae.fit(resumed, x, epochs=3, resume=True, **options)
    assert all(torch.equal(a, b) for a, b in zip(compiled.state_dict().values(), resumed.state_dict().values()))


def test_the_compiled_objective_is_refused_where_it_cannot_run():
    vae = pyro_vae.VAE(4, 2, hidden_sizes=(4,))
    for elbo in ("iwae", "meanfield"):
        with pytest.raises(ValueError, match="without it"):
            pyro_vae.fit(vae, torch.zeros(10, 4), elbo=elbo, num_particles=2, jit=True)
    with pytest.raises(TypeError, match="jit must be True or False"):  # a wrong type is a TypeError
        pyro_vae.fit(vae, torch.zeros(10, 4), jit="yes")
