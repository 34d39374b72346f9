"""Worker processes of tests/test_distributed.py (spawned, so they must be importable)."""

import pyro
import pyro.distributions as dist
import torch
import torch.distributed as torch_dist

import pyro_vae
from pyro_vae.train import ObjectiveStep, make_objective

N, D, L, B = 40, 6, 2, 5


class FixedNoiseVAE(pyro_vae.VAE):
    """A VAE whose guide draws ``z = loc + scale * noise[i]`` with a fixed noise table: the draws of
    each data point are the same whichever process scores it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("noise", torch.randn(N, L, generator=torch.Generator().manual_seed(7)))

    def guide(self, x, y=None, size_factor=None, *, indices=None, num_data=None, kl_weight=1.0):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", num_data, subsample=indices):
            loc, scale = self.encode(x)
            z = loc + scale * self.noise[indices]
            log_q = dist.Normal(loc, scale).log_prob(z).sum(-1)
            pyro.sample("z", dist.Delta(z, log_density=log_q, event_dim=1))


def model_and_data():
    torch.manual_seed(0)
    vae = FixedNoiseVAE(D, L, hidden_sizes=(8,))
    x = torch.bernoulli(torch.full((N, D), 0.4), generator=torch.Generator().manual_seed(1))
    return vae, x


def one_step(vae, x, rows, *, distributed):
    step = ObjectiveStep(vae, vae.model, vae.guide, make_objective("trace", 1), lr=0.05, distributed=distributed)
    with pyro.get_param_store().scope(), pyro.validation_enabled(False):
        return step(x[rows], indices=rows, num_data=N)


def step_worker(rank, world_size, folder):
    torch_dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world_size)
    vae, x = model_and_data()
    rows = torch.arange(rank * B, (rank + 1) * B)
    one_step(vae, x, rows, distributed=True)
    torch.save({k: v.detach().clone() for k, v in vae.state_dict().items()}, f"{folder}/rank{rank}.pt")
    torch_dist.destroy_process_group()


class FixedNoiseProgram:
    """A hand-written program whose guide uses a fixed noise table, so each point's draw is the same
    whichever process scores it; its parameters live in Pyro's parameter store, not in a module."""

    def __init__(self):
        torch.manual_seed(0)
        self.decoder = torch.nn.Linear(L, D)
        self.encoder = torch.nn.Linear(D, 2 * L)
        self.noise = torch.randn(N, L, generator=torch.Generator().manual_seed(7))

    def model(self, x, indices=None, num_data=None):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", num_data, subsample=indices):
            z = pyro.sample("z", dist.Normal(torch.zeros(L), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)

    def guide(self, x, indices=None, num_data=None):
        pyro.module("encoder", self.encoder)
        offset = pyro.param("offset", torch.zeros(L))
        with pyro.plate("data", num_data, subsample=indices):
            loc, raw = self.encoder(x).chunk(2, -1)
            scale = torch.nn.functional.softplus(raw) + 1e-3
            z = loc + offset + scale * self.noise[indices]
            log_q = dist.Normal(loc + offset, scale).log_prob(z).sum(-1)
            pyro.sample("z", dist.Delta(z, log_density=log_q, event_dim=1))


def program_step(x, rows, *, distributed):
    """One step of the program through fit's own trainee and step; returns the store's values after it."""
    from pyro_vae.program import as_program
    from pyro_vae.train.trainee import ProgramTrainee

    program = FixedNoiseProgram()
    bound = as_program(program.model, program.guide)
    with pyro.get_param_store().scope(), pyro.validation_enabled(False):
        trainee = ProgramTrainee(bound, bound.data(x), N)
        step = ObjectiveStep(
            trainee.parameters, trainee.model, trainee.guide, make_objective("trace", 1), 0.05, distributed=distributed
        )
        step(x[rows], indices=rows, num_data=N)
        return trainee.state_dict()


def program_step_worker(rank, world_size, folder):
    torch_dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world_size)
    _, x = model_and_data()
    state = program_step(x, torch.arange(rank * B, (rank + 1) * B), distributed=True)
    torch.save(state, f"{folder}/program{rank}.pt")
    torch_dist.destroy_process_group()
