"""Compiled steps (--compile): a compiled run draws the eager run's random numbers and ends
within float rounding of its weights, resumes bit for bit, compiles once per batch shape (not
once per step of a KL warm-up), and where compiling cannot work the run says so in one line and
goes on eager."""

import json

import pytest
import torch

from elbokit import recipes
from elbokit.train import Trainer
from elbokit.train.compiled import CompiledInference, CompiledStep
from elbokit.train.settings import COMPILE_AUTO_STEPS, resolve_compile
from references import build, weights

VAE = recipes.get_recipe("vae")


def _fit(path, compile, stop_at=None, resume=False):
    cfg = VAE.preset("debug", {
        "train": {"epochs": 3, "checkpoint_every": 7, "progress": False, "threads": 1,
                  "compile": compile},
        "objective": {"kl_schedule": "linear", "kl_warmup": 50},  # the step enters the loss
    })  # fmt: skip
    built = build(VAE, cfg, path)
    metrics = Trainer(built.config.train, path).fit(
        built.learner, built.data, stop_at=stop_at, resume=resume
    )
    return weights(built.learner.model), metrics, built.learner


@pytest.mark.skipif(resolve_compile("on", "cpu", 1)[0] == "off", reason="no C++ compiler here")
def test_a_compiled_run_agrees_with_eager_and_resumes_bit_for_bit(tmp_path):
    from torch._dynamo.utils import counters

    eager, eager_metrics, _ = _fit(tmp_path / "eager", "off")
    graphs = counters["stats"]["unique_graphs"]
    compiled, metrics, learner = _fit(tmp_path / "compiled", "on")
    assert isinstance(learner.forward, CompiledStep) and not learner.forward.eager
    # 99 steps, the KL weight changing at each of the first 50: the step is a symbolic integer,
    # so one graph for the 45-image batches and one for the last, shorter batch of each epoch
    assert counters["stats"]["unique_graphs"] - graphs <= 3
    # the same random draws (torch's generator, seeded per step): the weights differ only by
    # the rounding of fused kernels, ~1e-7 after 99 Adam steps (measured 6e-8)
    for k, v in eager.items():
        assert torch.allclose(compiled[k], v, rtol=0, atol=1e-5), k
    assert metrics["test/elbo"] == pytest.approx(eager_metrics["test/elbo"], abs=1e-4)
    # a compiled run stopped at step 45 and resumed ends with exactly the uninterrupted weights
    _fit(tmp_path / "resumed", "on", stop_at=45)
    resumed, _, _ = _fit(tmp_path / "resumed", "on", resume=True)
    for k, v in compiled.items():
        assert torch.equal(resumed[k], v), k


def test_a_failed_compile_says_one_line_and_the_step_runs_eager():
    def failing_backend(gm, example_inputs):
        raise RuntimeError("this backend builds nothing")

    def fn(x, step):
        return (x * 2 + step).sum()

    lines = []
    stepper = CompiledStep(fn, "the test's step", lines.append, backend=failing_backend)
    x = torch.arange(4.0)
    assert stepper(x, 3) == fn(x, 3) and stepper(x, 4) == fn(x, 4)
    assert stepper.eager and len(lines) == 1
    assert "compiling the test's step failed" in lines[0] and "eager" in lines[0]
    # an error of the code itself is not a compile failure: raised as eager raises it
    bad = CompiledStep(lambda x, step: x @ x.T[:2], "a wrong step", lines.append, backend="eager")
    with pytest.raises(RuntimeError, match="size mismatch|cannot be multiplied|shape"):
        bad(torch.ones(3, 4), 0)
    assert len(lines) == 1


def test_a_backward_that_fails_to_compile_fails_in_the_step_not_in_the_optimizer_update():
    """The backward graph is compiled with the forward (not lazily at the first backward,
    torch's default), so its failure is the step's: one line, eager, the update unharmed."""
    from torch._dynamo.backends.common import aot_autograd

    def no_backward(gm, example_inputs):
        raise RuntimeError("this backend builds no backward")

    backend = aot_autograd(fw_compiler=lambda gm, example_inputs: gm, bw_compiler=no_backward)
    w = torch.nn.Parameter(torch.arange(4.0))
    lines = []
    stepper = CompiledStep(lambda x, step: (w * x).square().sum(), "a step", lines.append,
                           backend=backend)  # fmt: skip
    loss = stepper(torch.ones(4), 0)
    loss.backward()
    assert torch.equal(w.grad, 2 * torch.arange(4.0))  # d/dw sum (w x)^2 = 2 w x^2
    assert stepper.eager and len(lines) == 1 and "builds no backward" in lines[0]


def test_compiled_inference_pads_a_short_batch_into_its_one_graph_or_runs_eager():
    built = []

    def backend(gm, example_inputs):
        built.append([tuple(x.shape) for x in example_inputs if isinstance(x, torch.Tensor)])
        return gm.forward

    def fn(x, t):
        return (x * t[:, None]).sum(1)

    x, t = torch.randn(8, 3), torch.arange(8.0)
    infer = CompiledInference(fn, "the test's sum", rows=8, backend=backend)
    for n in (8, 5, 1):  # the last chunks of a loop: padded, not compiled again
        torch.testing.assert_close(infer(x[:n], t[:n]), fn(x[:n], t[:n]))
    assert len(built) == 1 and (8, 3) in built[0]
    with pytest.raises(ValueError, match="9 rows; .* at most 8"):
        infer(torch.randn(9, 3), torch.arange(9.0))

    def failing(gm, example_inputs):
        raise RuntimeError("this backend builds nothing")

    lines = []
    infer = CompiledInference(fn, "the test's sum", rows=8, say=lines.append, backend=failing)
    torch.testing.assert_close(infer(x[:5], t[:5]), fn(x[:5], t[:5]))
    assert infer.eager and len(lines) == 1 and "runs eager" in lines[0]


def test_the_steps_of_many_runs_in_one_process_each_compile():
    """A study runs its trials in one process: each run's step is compiled, not only the first 8
    (Dynamo's recompile limit per code object), and none turns eager."""
    built = []

    def backend(gm, example_inputs):
        built.append(gm)
        return gm.forward

    lines = []
    for k in range(12):
        stepper = CompiledStep(lambda x, step, k=k: (x * k + step).sum(), f"run {k}",
                               lines.append, backend=backend)  # fmt: skip
        assert stepper(torch.ones(3), 2) == 3 * k + 6
    assert len(built) == 12 and not lines


def test_compile_is_resolved_from_the_run_and_the_compiler_never_from_timings():
    import torch._inductor.config as inductor

    assert resolve_compile("off", "cpu", 10**9) == ("off", "off")
    # auto: only a kind measured faster compiled on this device type, in a run long enough
    assert "not measured on cpu" in resolve_compile("auto", "cpu", 10**9)[1]
    slower = resolve_compile("auto", "cpu", 10**9, speedup={"cpu": 0.55})
    assert slower[0] == "off" and "0.55x" in slower[1]
    faster = {"cpu": 1.5}
    short = resolve_compile("auto", "cpu", COMPILE_AUTO_STEPS - 1, speedup=faster)
    assert short[0] == "off" and f"{COMPILE_AUTO_STEPS - 1:,} training steps" in short[1]
    assert resolve_compile("auto", "cpu", COMPILE_AUTO_STEPS, speedup=faster)[0] == "on"
    # a run that stops at a bar (the agent's CartPole: 25,000 steps planned, ~1,250 run) may
    # never pay its compile back: auto stays off and says why; on compiles
    early = resolve_compile("auto", "cpu", 10**6, speedup=faster, stops_early=True)
    assert early[0] == "off" and "stops at its bar" in early[1] and "1.50x" in early[1]
    if resolve_compile("on", "cpu", 1)[0] == "on":  # (a C++ compiler here)
        assert resolve_compile("on", "cpu", 10**6, speedup=faster, stops_early=True)[0] == "on"
    assert resolve_compile("on", "cpu", 10**6, compilable=False)[0] == "off"
    with pytest.raises(ValueError, match="compile = 'yes'.*off, on, auto"):
        resolve_compile("yes", "cpu", 1)
    here = resolve_compile("on", "cpu", 10**6)[0]
    # Inductor's own patch (pytest's monkeypatch cannot restore its config's attributes)
    with inductor.patch({"cpp.cxx": ("/nonexistent/c++",)}):
        chosen, why = resolve_compile("on", "cpu", 10**6)
        assert chosen == "off" and "no C++ compiler" in why and "eager" in why
        assert resolve_compile("auto", "cpu", 10**6, speedup=faster)[0] == "off"
    assert resolve_compile("on", "cpu", 10**6)[0] == here  # and the compiler is back


def test_compile_auto_on_the_command_line_says_why_and_saves_what_it_chose(tmp_path, capsys):
    from elbokit.cli import main

    debug = ["train", "vae", "--preset", "debug", "--eval-k", "0", "--no-progress", "--epochs", "1"]
    assert main([*debug, "--compile", "auto", "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    # the vae kind's compiled step measured 1.04x eager on the CPU: auto stays eager, and says so
    assert "compile off (auto: this kind's compiled step measured 1.04x" in out, out
    saved = json.loads((tmp_path / "a" / "config.json").read_text())["config"]["train"]
    assert saved["compile"] == "off"  # what was chosen, so a resume runs the same code
    assert main([*debug, "--compile", "maybe", "--out", str(tmp_path / "b")]) == 2
    assert "maybe" in capsys.readouterr().err and not (tmp_path / "b").exists()


@pytest.mark.skipif(resolve_compile("on", "cpu", 1)[0] == "off", reason="no C++ compiler here")
def test_bayes_by_backprop_compiled_agrees_with_eager(tmp_path):
    """The bnn kind compiles each variational network's ELBO (forward, KL to the prior, loss):
    the same weight draws as eager, the same weights to the rounding of fused kernels."""
    bnn = recipes.get_recipe("bnn")

    def fit(name, compile):
        cfg = bnn.preset("debug", {"train": {"epochs": 3, "progress": False, "threads": 1,
                                              "compile": compile},
                                   "model": {"baselines": False}})  # fmt: skip
        built = build(bnn, cfg, tmp_path / name)
        start = weights(built.learner.modules["bnn"])
        Trainer(built.config.train, tmp_path / name).fit(built.learner, built.data)
        return built.learner, start

    (eager, start), (compiled, _) = fit("eager", "off"), fit("compiled", "on")
    assert isinstance(compiled.elbos["bnn"], CompiledStep) and not compiled.elbos["bnn"].eager
    a, b = weights(eager.modules["bnn"]), weights(compiled.modules["bnn"])
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert torch.allclose(b[k], v, rtol=0, atol=1e-5), (k, (b[k] - v).abs().max())
    # and training moved them: the comparison is of trained networks, not of initial ones
    assert max(float((a[k] - start[k]).abs().max()) for k in a) > 1e-2


@pytest.mark.skipif(resolve_compile("on", "cpu", 1)[0] == "off", reason="no C++ compiler here")
def test_the_skills_update_compiled_agrees_with_eager(tmp_path):
    """The skills kind compiles the method's loss, the critics' and the actor's losses, each
    with its backward: the same draws as eager (the actor's noise), the same weights to the
    rounding of fused kernels after ~125 updates; the compiled run stopped and resumed ends with
    the uninterrupted one's checkpoint bit for bit. (DADS, whose reward is compiled too, agreed
    the same way, 8e-6, when measured; left out of the suite for its ~20 s of compiling.)"""
    from references import assert_same_checkpoints

    kind = recipes.get_recipe("skills")
    method = "diayn"

    def fit(name, compile, stop_at=None, resume=False):
        cfg = kind.preset("debug", {"skill": {"method": method, "prior_samples": 10},
                                    "train": {"progress": False, "checkpoint_every": 40,
                                              "threads": 1, "compile": compile},
                                    "evaluate": {"eval_episodes": 0}})  # fmt: skip
        built = build(kind, cfg, tmp_path / name)
        start = weights(built.learner.modules["actor"])
        Trainer(built.config.train, tmp_path / name).fit(
            built.learner, built.data, stop_at=stop_at, resume=resume
        )
        return built.learner, start

    (eager, start), (compiled, _) = fit("eager", "off"), fit("compiled", "on")
    steps = [compiled.sac._critic_loss, compiled.sac._actor_loss, compiled.method._loss]
    assert all(isinstance(s, CompiledStep) and not s.eager for s in steps)
    assert eager.sac._critic_loss == eager.sac.critic_loss  # eager: the plain functions
    model = "discriminator"
    for name in ("actor", "critic", model):
        a, b = weights(eager.modules[name]), weights(compiled.modules[name])
        for k, v in a.items():
            assert torch.allclose(b[k], v, rtol=0, atol=1e-4), (name, k, (b[k] - v).abs().max())
    a = weights(eager.modules["actor"])
    assert max(float((a[k] - start[k]).abs().max()) for k in a) > 1e-2  # trained, not initial
    fit("resumed", "on", stop_at=70)
    fit("resumed", "on", resume=True)
    assert_same_checkpoints(tmp_path / "compiled", tmp_path / "resumed",
                            ("actor", "critic", "critic_target", model, "extra"))  # fmt: skip


@pytest.mark.skipif(resolve_compile("on", "cpu", 1)[0] == "off", reason="no C++ compiler here")
def test_the_agent_step_compiled_agrees_with_eager(tmp_path):
    """The agent compiles the world model's loss (its sequence unrolled), the actor's loss (the
    imagined rollout; CartPole's one-hot actions drawn as eager draws them) and the critic's,
    each one graph with its backward: the eager run's weights to the rounding of fused kernels.
    Sequences of 2 and a horizon of 2 keep the graphs small; even so compiling takes ~40 s on 2
    cores, so continuous actions (Pendulum, measured to agree the same way) are not run here."""
    env = "CartPole-v1"
    kind = recipes.get_recipe("agent")

    def fit(name, compile):
        cfg = kind.preset("debug", {"env": {"name": env}, "agent": {"seq_len": 2},
                                    "ac": {"horizon": 2},
                                    "train": {"epochs": 2, "progress": False, "threads": 1,
                                              "compile": compile},
                                    "evaluate": {"eval_episodes": 0}})  # fmt: skip
        built = build(kind, cfg, tmp_path / name)
        start = weights(built.learner.modules["world_model"])
        Trainer(built.config.train, tmp_path / name).fit(built.learner, built.data)
        return built.learner, start

    (eager, start), (compiled, _) = fit("eager", "off"), fit("compiled", "on")
    steps = [compiled._world_model_loss, compiled.ac._actor_loss, compiled.ac._critic_loss]
    assert all(isinstance(s, CompiledStep) and not s.eager for s in steps)
    assert eager.updates == compiled.updates > 20
    for name in ("world_model", "actor_critic"):
        a, b = weights(eager.modules[name]), weights(compiled.modules[name])
        for k, v in a.items():
            assert torch.allclose(b[k], v, rtol=0, atol=1e-4), (name, k, (b[k] - v).abs().max())
    a = weights(eager.modules["world_model"])
    assert max(float((a[k] - start[k]).abs().max()) for k in a) > 1e-2  # trained, not initial
