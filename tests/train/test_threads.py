"""pyro_vae runs one call at a time: a second thread gets a clear refusal, not a Pyro-internal
error, and neither thread's model nor the caller's parameter store is changed by the other."""

import threading

import pyro
import torch

import pyro_vae

X = torch.bernoulli(torch.full((64, 6), 0.5), generator=torch.Generator().manual_seed(0))


def test_a_second_thread_is_refused_while_a_fit_runs():
    inside, release, errors = threading.Event(), threading.Event(), []

    def slow_fit():
        vae = pyro_vae.VAE(6, 2, hidden_sizes=(4,))
        model = vae.model

        def held_model(*args, **kwargs):  # the first training step waits until the other thread has tried
            if not inside.is_set():
                inside.set()
                release.wait(30)
            return model(*args, **kwargs)

        vae.model = held_model
        pyro_vae.fit(vae, X, epochs=1, batch_size=64)

    first = threading.Thread(target=slow_fit)
    first.start()
    assert inside.wait(30)

    def second():
        try:
            pyro_vae.fit(pyro_vae.VAE(6, 2, hidden_sizes=(4,)), X, epochs=1)
        except RuntimeError as error:
            errors.append(str(error))

    other = threading.Thread(target=second)
    other.start()
    other.join(30)
    release.set()
    first.join(30)
    assert len(errors) == 1 and "Another thread is running a pyro_vae tool" in errors[0]


def test_threads_one_after_another_work_and_leave_the_callers_store_alone():
    pyro.clear_param_store()
    pyro.param("mine", torch.tensor(1.5))
    results = []
    for seed in (0, 1):
        thread = threading.Thread(
            target=lambda s=seed: results.append(
                pyro_vae.fit(pyro_vae.VAE(6, 2, hidden_sizes=(4,)), X, epochs=1, seed=s).rows[-1]["train_elbo"]
            )
        )
        thread.start()
        thread.join(60)
    assert len(results) == 2
    assert list(pyro.get_param_store().keys()) == ["mine"] and float(pyro.param("mine")) == 1.5
    pyro.clear_param_store()
