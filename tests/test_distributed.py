"""torchrun with 2 gloo processes: the data-parallel step is the step of the global batch."""

import json
import os
import shutil
import subprocess
import sys
import warnings

import torch

from elbokit import recipes
from elbokit.train import make_adam, step_seed
from references import build


def _torchrun(args, run):
    """``torchrun --nproc_per_node=2 -m elbokit ARGS`` with one thread each; one retry."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "elbokit", *args, "--threads", "1", "--no-progress", "--out", str(run)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        # One retry, for flakes of the launcher itself. The aborts that made this test flaky (2 in
        # 25 launches: DDP's reducer destroyed after the process group at exit) are fixed in the
        # trainer, 0 in 60 launches since; a bug in our code fails both tries, and the first
        # failure is shown as a warning either way.
        warnings.warn(f"torchrun failed once, retrying: {res.stderr[-1500:]}", stacklevel=1)
        shutil.rmtree(run, ignore_errors=True)
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]


def _single_process_steps(model, objective, batches, lr: float, seed: int) -> int:
    """The data-parallel steps in one process: each global batch cut into the two ranks' shards,
    each shard's loss with that rank's noise stream, the gradients averaged, one Adam step."""
    params = list(model.parameters())
    opt = make_adam(params, lr)
    steps = 0
    for step, x in enumerate(batches):
        grads = [torch.zeros_like(p) for p in params]
        for rank, shard in enumerate(x.tensor_split(2)):
            torch.manual_seed(step_seed(seed, step, rank))
            loss = objective(model, shard, step).loss
            for g, d in zip(grads, torch.autograd.grad(loss, params), strict=True):
                g += d / 2
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        opt.step()
        steps += 1
    return steps


def _assert_same_weights(a, b):
    for k, v in b.state_dict().items():
        torch.testing.assert_close(a.state_dict()[k], v, rtol=1e-5, atol=1e-6, msg=k)


def test_two_gloo_processes_match_the_single_process_steps(tmp_path):
    run = tmp_path / "ddp"
    _torchrun(
        ["train", "vae", "--preset", "debug", "--epochs", "1", "--checkpoint-every", "1000"], run
    )
    ddp, state = recipes.open_run(run).learner()

    vae = recipes.get_recipe("vae")
    built = build(vae, vae.preset("debug", {"train": {"epochs": 1}}), tmp_path)
    cfg, model, objective = built.config, built.learner.model, built.learner.objective
    batches = built.data.batches("train", cfg.train.batch_size, seed=cfg.train.seed, epoch=0)
    steps = _single_process_steps(model, objective, batches, cfg.optim.lr, cfg.train.seed)
    assert state["step"] == steps
    _assert_same_weights(ddp.model, model)
    # rank 0 alone wrote: one test line for the one epoch
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert sum("test/elbo" in line for line in lines) == 1


def test_world_model_sequences_shard_across_two_gloo_processes(tmp_path):
    from test_world_model import _folder

    eps = _folder(tmp_path / "eps")
    run = tmp_path / "ddp"
    _torchrun(["train", "world-model", "--preset", "debug", "--data", str(eps), "--seq-len", "8",
               "--epochs", "1", "--grad-clip", "0", "--no-report"], run)  # fmt: skip
    ddp, state = recipes.open_run(run).learner()

    wm = recipes.get_recipe("world-model")
    cfg = wm.preset("debug", {"data": {"source": str(eps), "seq_len": 8},
                              "train": {"epochs": 1, "grad_clip": 0.0}})  # fmt: skip
    built = build(wm, cfg, tmp_path)
    model, objective = built.learner.model, built.learner.objective
    batches = built.data.batches("train", cfg.train.batch_size, seed=cfg.train.seed, epoch=0)
    steps = _single_process_steps(model, objective, batches, cfg.optim.lr, cfg.train.seed)
    assert state["step"] == steps > 1
    _assert_same_weights(ddp.model, model)


def _parity(tmp_path, kind: str, preset_overrides: dict, args: list[str], atol: float = 1e-6):
    """``kind``'s debug preset for one epoch under torchrun (2 gloo processes) against the same
    steps taken in one process on the same global batches: the same parameters."""
    run = tmp_path / "ddp"
    _torchrun(["train", kind, "--preset", "debug", "--epochs", "1", "--checkpoint-every", "1000",
               *args], run)  # fmt: skip
    ddp, state = recipes.open_run(run).learner()
    recipe = recipes.get_recipe(kind)
    built = build(
        recipe, recipe.preset("debug", {"train": {"epochs": 1}, **preset_overrides}), tmp_path
    )
    cfg, model, objective = built.config, built.learner.model, built.learner.objective
    batches = built.data.batches("train", cfg.train.batch_size, seed=cfg.train.seed, epoch=0)
    # parameters whose gradient is zero in exact arithmetic (a bias just before a normalization):
    # Adam turns their rounding noise into full-size steps, which differ with the order of the
    # sums, so they are not compared; every parameter with a gradient is
    steps = _single_process_steps(model, objective, batches, cfg.optim.lr, cfg.train.seed)
    assert state["step"] == steps > 1
    x = next(built.data.batches("train", cfg.train.batch_size, seed=cfg.train.seed, epoch=0))
    torch.manual_seed(0)  # (after training: an output layer initialized at 0 blocks every other)
    grads = torch.autograd.grad(objective(model, x, steps).loss, list(model.parameters()))
    names = [n for n, _ in model.named_parameters()]
    null = {n for n, g in zip(names, grads, strict=True) if g.abs().max() < 1e-7}
    compared = 0
    for k, v in model.state_dict().items():
        if k not in null:
            torch.testing.assert_close(ddp.model.state_dict()[k], v, rtol=1e-5, atol=atol, msg=k)
            compared += 1
    assert compared > 0.8 * len(model.state_dict())


def test_linear_gaussian_takes_the_same_steps_in_two_gloo_processes(tmp_path):
    _parity(tmp_path, "linear-gaussian", {"evaluate": {"eval_k": 0}}, ["--eval-k", "0"])


def test_diffusion_takes_the_same_steps_in_two_gloo_processes(tmp_path):
    # (without its gradient clipping, which the one-process replica does not do)
    # (a few steps, as the VAE's: 4 batches of 50; a U-Net's convolutions summed in another
    # order move its weights by up to ~5e-6 in those steps, ~1e-4 over an epoch of Adam steps)
    _parity(tmp_path, "diffusion", {"data": {"limit": 200}, "evaluate": {"limit": -1},
                                    "train": {"epochs": 1, "grad_clip": 0.0}},
            ["--eval-images", "-1", "--grad-clip", "0", "--limit", "200"], atol=1e-5)  # fmt: skip


def test_kinds_that_run_in_one_process_refuse_torchrun(tmp_path):
    """Under torchrun, every kind that cannot shard its step says so by name, before training."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "elbokit", "train", "bnn", "--preset", "debug", "--out", str(tmp_path / "b")]  # fmt: skip
    res = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert res.returncode != 0 and "bnn trains in one process" in res.stdout + res.stderr
    assert not (tmp_path / "b").exists()
