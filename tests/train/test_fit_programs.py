"""fit on Pyro programs written by hand: minibatch scaling, warm-up, validation, checkpoints and
bit-identical resume, enumeration, each against a closed form or an equivalent run."""

import json

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from torch import nn
from torch.distributions import constraints

import pyro_vae
from helpers.ppca import log_marginal, max_log_likelihood
from helpers.programs import LabelledMixture
from pyro_vae.io.checkpoint import read_payload
from pyro_vae.train.trainee import _training_callable

D, L = 5, 2


def data(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(D, L, generator=g) * 1.5
    return torch.randn(n, L, generator=g) @ W.T + 0.5 * torch.randn(n, D, generator=g) + 1.0


class LinearProgram:
    """Probabilistic PCA written by hand: ``pyro.module`` networks and a ``pyro.param`` noise scale.

    ``subsample=True`` declares the plate as ``pyro.plate("points", num_data, subsample=indices)``,
    which scales itself; otherwise the plate has the minibatch's size and ``fit`` scales it.
    """

    def __init__(self, seed=0, subsample=False):
        torch.manual_seed(seed)
        self.decoder = nn.Linear(L, D)
        self.encoder = nn.Linear(D, 2 * L)
        self.subsample = subsample

    def plate(self, x, indices, num_data):
        if self.subsample:
            return pyro.plate("points", num_data, subsample=indices)
        return pyro.plate("points", x.shape[0])

    def model(self, x, indices=None, num_data=None):
        pyro.module("decoder", self.decoder)
        noise = pyro.param("noise", torch.tensor(1.0), constraint=constraints.positive)
        with self.plate(x, indices, num_data):
            z = pyro.sample("z", dist.Normal(torch.zeros(L), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(z), noise).to_event(1), obs=x)

    def guide(self, x, indices=None, num_data=None):
        pyro.module("encoder", self.encoder)
        with self.plate(x, indices, num_data):
            loc, raw = self.encoder(x).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, nn.functional.softplus(raw) + 1e-3).to_event(1))


def store_values():
    return {k: v.detach().clone() for k, v in pyro.get_param_store().named_parameters()}


def test_a_program_trains_to_the_closed_form_maximum():
    x = data()
    program = LinearProgram()
    history = pyro_vae.fit(program.model, x, guide=program.guide, plate="points", epochs=300, lr=5e-2, batch_size=200)
    # The exact log-likelihood at the trained parameters reaches the PPCA maximum.
    W, b = program.decoder.weight.detach().double(), program.decoder.bias.detach().double()
    exact = log_marginal(W, b, float(pyro.param("noise")), x.double()).mean()
    assert float(exact) == pytest.approx(float(max_log_likelihood(x.double(), L)), abs=0.04)
    # The training ELBO is per point of the whole data set: the minibatch plate was scaled by N / B.
    elbo = pyro_vae.mean_elbo(program.model, x, guide=program.guide, plate="points")
    assert history.rows[-1]["train_elbo"] == pytest.approx(elbo, abs=0.3)
    assert set(pyro.get_param_store().keys()) >= {"noise", "decoder$$$weight", "encoder$$$weight"}


class ShiftedProgram(LinearProgram):
    """:class:`LinearProgram` with a global latent offset, whose KL the data plate's scale weighs against
    the per-point terms: training depends on that scale being right."""

    def model(self, x, indices=None, num_data=None):
        shift = pyro.sample("shift", dist.Normal(torch.zeros(D), 1.0).to_event(1))
        super().model(x - shift, indices, num_data)

    def guide(self, x, indices=None, num_data=None):
        loc = pyro.param("shift_loc", torch.zeros(D))
        scale = pyro.param("shift_scale", torch.ones(D), constraint=constraints.positive)
        pyro.sample("shift", dist.Normal(loc, scale).to_event(1))
        super().guide(x, indices, num_data)


def test_a_minibatch_plate_is_scaled_like_a_subsampled_one():
    """The plate of the minibatch's size, scaled by N / B, trains exactly as the subsampling plate."""
    x = data(120)
    runs = []
    for subsample in (False, True):
        pyro.clear_param_store()
        program = ShiftedProgram(subsample=subsample)
        pyro_vae.fit(program.model, x, guide=program.guide, plate="points", epochs=3, batch_size=40, lr=1e-2)
        runs.append(store_values())
    for name, value in runs[0].items():
        assert torch.allclose(value, runs[1][name], atol=1e-6), name


def test_the_training_scale_and_kl_weight_reach_the_right_sites():
    program = pyro_vae.program.as_program(LinearProgram().model, plate="points")
    x = data(8)
    model = _training_callable(program, program.model, 80)
    trace = poutine.trace(model).get_trace(x, indices=torch.arange(8), num_data=80, kl_weight=0.25)
    assert trace.nodes["x"]["scale"] == pytest.approx(10.0)  # N / B
    assert trace.nodes["z"]["scale"] == pytest.approx(2.5)  # N / B times the KL weight


def test_resume_of_a_program_is_bit_identical(tmp_path):
    x, val = data(120), data(40, seed=1)
    settings = dict(guide=None, plate="points", val=val, batch_size=32, seed=3, kl_warmup_epochs=2, restore_best=False)

    def run(epochs, seed=0, **extra):
        program = LinearProgram(seed=seed)
        options = {**settings, "guide": program.guide, **extra}
        return pyro_vae.fit(program.model, x, epochs=epochs, **options), store_values()

    full_history, full = run(4)
    pyro.clear_param_store()
    checkpoint = tmp_path / "program.pt"
    run(2, checkpoint=checkpoint)
    pyro.clear_param_store()
    # A rebuilt program starts elsewhere (another seed): the checkpoint's values replace its own.
    resumed_history, resumed = run(4, seed=9, checkpoint=checkpoint, resume=True)
    for name, value in full.items():
        assert torch.equal(value, resumed[name]), name
    assert [r["train_elbo"] for r in full_history.rows] == [r["train_elbo"] for r in resumed_history.rows]
    assert [r["val_elbo"] for r in full_history.rows] == [r["val_elbo"] for r in resumed_history.rows]
    # The checkpoint holds every parameter the program registers, and its optimiser state.
    payload = read_payload(checkpoint)
    assert set(payload["state_dict"]) == set(full)
    assert json.loads(payload["config"])["kind"] == "program"
    with pytest.raises(ValueError, match="hand-written Pyro program"):
        pyro_vae.load(checkpoint)


def test_load_parameters_restores_a_checkpoint_into_a_rebuilt_program(tmp_path):
    x = data(120)
    program = LinearProgram()
    checkpoint = tmp_path / "program.pt"
    pyro_vae.fit(program.model, x, guide=program.guide, plate="points", epochs=2, checkpoint=checkpoint)
    trained = store_values()
    pyro.clear_param_store()
    rebuilt = LinearProgram(seed=5)
    poutine.trace(rebuilt.model).get_trace(x[:2])  # registers the parameters with their constraints
    poutine.trace(rebuilt.guide).get_trace(x[:2])
    assert sorted(pyro_vae.load_parameters(checkpoint)) == sorted(trained)
    for name, value in store_values().items():
        assert torch.equal(value, trained[name]), name
    assert torch.equal(rebuilt.decoder.weight.detach(), trained["decoder$$$weight"])  # the module itself


def test_early_stopping_keeps_the_best_epoch_of_a_program():
    x, val = data(120), data(40, seed=1)
    program = LinearProgram()
    history = pyro_vae.fit(
        program.model, x, guide=program.guide, plate="points", val=val, epochs=30, patience=2, lr=0.3, batch_size=20
    )
    best = history.best_epoch
    assert best is not None and history.rows[best - 1]["val_elbo"] == max(r["val_elbo"] for r in history.rows)
    now = pyro_vae.mean_elbo(program.model, val, guide=program.guide, plate="points")
    assert now == pytest.approx(history.rows[best - 1]["val_elbo"], abs=1e-5)  # the kept epoch is the best one


def test_an_enumerating_program_trains_on_traceenum_and_validates_exactly(tmp_path):
    """A mixture program with a learnable noise scale: the class is summed out in training and validation."""
    truth = LabelledMixture()
    x, _ = truth.simulate(240)
    val, _ = truth.simulate(60, seed=2)

    def model(x):
        noise = pyro.param("noise", torch.tensor(2.0), constraint=constraints.positive)
        with pyro.plate("items", x.shape[0]):
            y = pyro.sample("label", dist.Categorical(truth.pi), infer={"enumerate": "parallel"})
            code = pyro.sample("code", dist.Normal(torch.zeros(3), 1.0).to_event(1))
            pyro.sample("obs", dist.Normal(code @ truth.W.T + truth.mu[y], noise).to_event(1), obs=x)

    encoder = nn.Linear(7, 6)

    def guide(x):
        pyro.module("encoder", encoder)
        with pyro.plate("items", x.shape[0]):
            loc, raw = encoder(x).chunk(2, -1)
            pyro.sample("code", dist.Normal(loc, nn.functional.softplus(raw) + 1e-3).to_event(1))

    checkpoint = tmp_path / "mixture.pt"
    history = pyro_vae.fit(
        model, x, guide=guide, plate="items", val=val, epochs=30, lr=2e-2, batch_size=60, checkpoint=checkpoint
    )
    settings = json.loads(read_payload(checkpoint)["training"]["settings"])
    assert settings["elbo"] == "enum"  # chosen because the model enumerates
    assert float(pyro.param("noise")) == pytest.approx(0.6, abs=0.15)  # the true noise scale
    # Validation is the exactly enumerated ELBO of mean_elbo, at the kept (best) epoch.
    assert history.rows[history.best_epoch - 1]["val_elbo"] == pytest.approx(
        pyro_vae.mean_elbo(model, val, guide=guide, plate="items"), abs=1e-5
    )
    with pytest.raises(ValueError, match="elbo='enum'"):
        pyro_vae.fit(model, x, guide=guide, plate="items", epochs=1, elbo="meanfield")


def test_fit_refuses_what_it_cannot_train():
    x = data(20)
    vae = pyro_vae.VAE(D, L)
    with pytest.raises(ValueError, match="brings its own guide"):
        pyro_vae.fit(vae, x, guide=LinearProgram().guide)

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(L), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True).expand(*z.shape[:-1], D), 1.0).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.zeros(L), 1.0).to_event(1))

    with pytest.raises(ValueError, match="register no parameters"):
        pyro_vae.fit(model, x, guide=guide, epochs=1)
    with pytest.raises(ValueError, match="needs the amortized posterior"):
        pyro_vae.fit(model, x, epochs=1)


def test_a_diverging_program_gets_its_finite_parameters_back():
    x = data(60)
    program = LinearProgram()

    def model(x, indices=None, num_data=None):
        program.model(x, indices, num_data)
        scale = pyro.param("goes_negative", torch.tensor(1.0))
        pyro.factor("breaks", -1e3 * scale.sqrt())  # Adam's first step of 2 takes the scale below 0: NaN

    before = None

    def remember():
        nonlocal before
        before = store_values()

    with pytest.raises(FloatingPointError, match="step 2 of epoch 1: the training loss became nan"):
        pyro_vae.fit(
            model, x, guide=program.guide, plate="points", epochs=2, batch_size=20, before_training=remember, lr=2.0
        )
    after = store_values()
    for name, value in before.items():
        assert torch.equal(value, after[name]), name  # the parameters from before the first epoch


def test_elbo_takes_pyros_own_objects(tmp_path):
    x = data(60)
    program = LinearProgram()
    checkpoint = tmp_path / "run.pt"
    pyro_vae.fit(
        program.model,
        x,
        guide=program.guide,
        plate="points",
        epochs=1,
        elbo=pyro.infer.TraceMeanField_ELBO(num_particles=2),
        checkpoint=checkpoint,
    )
    settings = json.loads(read_payload(checkpoint)["training"]["settings"])
    assert settings["elbo"] == "meanfield" and settings["num_particles"] == 2
    with pytest.raises(ValueError, match="TraceEnum_ELBO instances"):
        pyro_vae.fit(program.model, x, guide=program.guide, plate="points", epochs=1, elbo=pyro.infer.RenyiELBO())


def test_save_parameters_writes_the_store_that_load_parameters_reads(tmp_path):
    x = data(60)
    program = LinearProgram()
    pyro_vae.fit(program.model, x, guide=program.guide, plate="points", epochs=1)
    trained = store_values()
    path = pyro_vae.save_parameters(tmp_path / "params.pt")
    pyro.clear_param_store()
    rebuilt = LinearProgram(seed=5)
    poutine.trace(rebuilt.model).get_trace(x[:2])
    poutine.trace(rebuilt.guide).get_trace(x[:2])
    assert any(not torch.equal(v, trained[k]) for k, v in store_values().items())  # the rebuilt start differs
    assert sorted(pyro_vae.load_parameters(path)) == sorted(trained)
    for name, value in store_values().items():
        assert torch.equal(value, trained[name]), name
