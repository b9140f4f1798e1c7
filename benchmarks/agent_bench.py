"""The Dreamer agent (``elbokit train agent``): its speed, and the wall time to the bars.

    python benchmarks/agent_bench.py speed --threads 2          steps per second, and sheeprl's
    python benchmarks/agent_bench.py threshold --seeds 0 1 2    CartPole from states to >= 475
    python benchmarks/agent_bench.py threshold --seeds 0 1 2 --compile on
    python benchmarks/agent_bench.py threshold --preset pixels --seeds 0
    python benchmarks/agent_bench.py pendulum                   continuous actions vs random

speed: with the default preset's sizes, (a) acting alone (RSSM filter, actor, environments,
replay) in environment steps per second, (b) the whole training step at the preset's ratio
(one gradient step per ``train_every`` environment steps) in environment and gradient steps per
second, (c) the gradient step alone (world model, then actor and critic in imagination), (c') the same
as ``--compile on`` compiles it (the world model's, the actor's and the critic's losses, each one
graph with its backward), (c) and (c') in alternating rounds, and in the same run (d) sheeprl's DreamerV3 gradient step (``sheeprl.algos.dreamer_v3.train``) at the
same sizes on CartPole state batches, when sheeprl is importable by ``--sheeprl-python`` (a
separate venv: ``python -m venv /work/speer && /work/speer/bin/pip install torch==2.13.0
sheeprl``; see ``benchmarks/_sheeprl_v3.py``).

threshold: trains the preset (it stops once an evaluation of 20 fresh episodes reaches 475) per
seed and reports the environment steps, gradient steps and training seconds of the first
evaluation at or above 475, then the median over seeds; and the final evaluation's return.

pendulum: trains the ``pendulum`` preset and evaluates 20 fresh episodes against a uniform random
policy on the same starts.

The CPU, its capability and the thread count are printed first: name them beside any figure.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from elbokit import recipes
from elbokit.models.envs import make_env
from elbokit.recipes.agent import AgentLearner
from elbokit.train.learner import StepContext
from elbokit.train.settings import describe_machine

RECIPE = recipes.get_recipe("agent")


def _learner(preset: str, threads: int, compile: bool = False) -> AgentLearner:
    torch.set_num_threads(threads)
    cfg = RECIPE.resolve(RECIPE.preset(preset))
    torch.manual_seed(0)
    learner = AgentLearner(cfg)
    learner.setup(StepContext(compile=compile))
    return learner


def speed(args) -> None:
    learner = _learner(args.preset, args.threads)
    cfg = learner.cfg
    n = cfg.env.envs
    prefill = cfg.agent.prefill // n + 1
    for i in range(prefill):  # random actions, no learning: fills the replay
        learner.train_step(None, i)
    learner.credit = -1e9  # (a) acting alone: no gradient step is due
    t0 = time.perf_counter()
    for i in range(args.act_steps):
        learner.train_step(None, i)
    act = args.act_steps * n / (time.perf_counter() - t0)
    learner.credit = 0.0
    for i in range(args.warmup):
        learner.train_step(None, i)
    u0, t0 = learner.updates, time.perf_counter()
    for i in range(args.steps):
        learner.train_step(None, i)
    dt = time.perf_counter() - t0
    full_env, full_grad = args.steps * n / dt, (learner.updates - u0) / dt
    # (c) the gradient step alone, and (c') compiled as --compile on compiles it (a second
    # learner, the same seed and prefill), in alternating rounds: this machine drifts
    comp = _learner(args.preset, args.threads, compile=True)
    t0 = time.perf_counter()
    for i in range(prefill):  # its first gradient step (at the prefill's end) compiles
        comp.train_step(None, i)
    for i in range(3):
        comp.learn(i)
    compile_s = time.perf_counter() - t0
    eager_rates, comp_rates = [], []
    for _ in range(args.rounds):
        for who, rates in ((learner, eager_rates), (comp, comp_rates)):
            t0 = time.perf_counter()
            for i in range(args.steps):
                who.learn(i)
            rates.append(args.steps / (time.perf_counter() - t0))
    grad, grad_c = statistics.median(eager_rates), statistics.median(comp_rates)
    ratios = [c / e for c, e in zip(comp_rates, eager_rates, strict=True)]
    m, ac = cfg.model, cfg.ac
    params = sum(p.numel() for mod in learner.modules.values() for p in mod.parameters())
    print(f"elbokit agent, preset {args.preset}: RSSM {m.deter} + {m.groups}x{m.classes}, MLPs "
          f"{list(m.head_hidden)}, actor/critic {list(ac.hidden)}, batch {cfg.agent.batch_size} x "
          f"{cfg.agent.seq_len}, horizon {ac.horizon}; {n} envs, a gradient step per "
          f"{cfg.agent.train_every} environment steps; {params:,} parameters")  # fmt: skip
    print(f"  (a) acting alone:        {act:8.0f} environment steps/s")
    print(
        f"  (b) training:            {full_env:8.1f} environment steps/s, {full_grad:.2f} gradient steps/s"
    )
    print(f"  (c) gradient step alone: {grad:8.2f} gradient steps/s ({1000 / grad:.1f} ms; median "
          f"of {args.rounds} rounds of {args.steps})")  # fmt: skip
    print(f"  (c') --compile on:       {grad_c:8.2f} gradient steps/s ({1000 / grad_c:.1f} ms), "
          f"{statistics.median(ratios):.2f}x eager (rounds {', '.join(f'{r:.2f}' for r in ratios)}); "
          f"its prefill and first steps, compiling, {compile_s:.0f} s")  # fmt: skip
    if args.sheeprl_python and Path(args.sheeprl_python).exists() and not cfg.env.pixels:
        cmd = [args.sheeprl_python, str(Path(__file__).with_name("_sheeprl_v3.py")),
               "--threads", str(args.threads), "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--deter", str(m.deter), "--hidden", str(m.hidden), "--groups", str(m.groups),
               "--classes", str(m.classes), "--dense", str(m.head_hidden[0]),
               "--layers", str(len(m.head_hidden)), "--batch", str(cfg.agent.batch_size),
               "--seq", str(cfg.agent.seq_len), "--horizon", str(ac.horizon)]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        line = next((x for x in out.stdout.splitlines()[::-1] if x.startswith("{")), None)
        if line is None:
            print(f"  (d) sheeprl failed: {out.stderr.strip().splitlines()[-1:]}")
        else:
            r = json.loads(line)
            print(f"  (d) sheeprl {r['sheeprl']} DreamerV3 gradient step: {r['steps_per_s']:.2f} "
                  f"gradient steps/s ({r['parameters']:,} parameters); elbokit / sheeprl = "
                  f"{grad / r['steps_per_s']:.2f}x eager, {grad_c / r['steps_per_s']:.2f}x "
                  "compiled")  # fmt: skip
    else:
        print("  (d) sheeprl: not measured (--sheeprl-python PYTHON of a venv with sheeprl)")
    learner.close()
    comp.close()


def _first_at(metrics: Path, bar: float) -> dict | None:
    for line in metrics.read_text().splitlines():
        d = json.loads(line)
        if d.get("test/return", -math.inf) >= bar:
            return d
    return None


def threshold(args) -> None:
    rows = []
    for seed in args.seeds:
        overrides = {"train": {"seed": seed, "threads": args.threads, "progress": False,
                               "compile": args.compile},
                     "agent": {"stop_return": args.bar}}  # fmt: skip
        cfg = RECIPE.preset(args.preset, overrides)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            run = recipes.train(RECIPE, cfg, out=Path(tmp) / "run", say=lambda *a: None)
            wall = time.perf_counter() - t0
            hit = _first_at(run / "metrics.jsonl", args.bar)
            final = json.loads((run / "eval.json").read_text())
        row = {"seed": seed, "wall_s": wall, "final_return": final["mean_return"],
               "final_se": final["return_se"]}  # fmt: skip
        if hit:
            row.update(env_steps=hit["test/env_steps"], updates=hit["test/updates"],
                       seconds=hit["test/seconds"], at_return=hit["test/return"])  # fmt: skip
            print(f"seed {seed}: {hit['test/return']:.1f} >= {args.bar:g} after "
                  f"{hit['test/env_steps']:,.0f} environment steps, {hit['test/updates']:,.0f} "
                  f"gradient steps, {hit['test/seconds']:.0f} s of training ({wall:.0f} s wall "
                  f"with evaluations); final 20 fresh episodes {final['mean_return']:.1f} +- "
                  f"{final['return_se']:.1f}", flush=True)  # fmt: skip
        else:
            print(
                f"seed {seed}: never reached {args.bar:g} ({wall:.0f} s); final "
                f"{final['mean_return']:.1f} +- {final['return_se']:.1f}",
                flush=True,
            )
        rows.append(row)
    hits = [r for r in rows if "seconds" in r]
    if hits:
        print(f"median over {len(hits)} of {len(rows)} seeds that reached it: "
              f"{statistics.median(r['env_steps'] for r in hits):,.0f} environment steps, "
              f"{statistics.median(r['seconds'] for r in hits):.0f} s of training, "
              f"{statistics.median(r['wall_s'] for r in hits):.0f} s wall")  # fmt: skip


def pendulum(args) -> None:
    cfg = RECIPE.preset("pendulum", {"train": {"threads": args.threads, "progress": False},
                                     "evaluate": {"eval_episodes": 20}})  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = recipes.train(RECIPE, cfg, out=Path(tmp) / "run", say=print)
        wall = time.perf_counter() - t0
        final = json.loads((run / "eval.json").read_text())
    env = make_env("Pendulum-v1", 20, seed=12345)
    env.reset()
    g = torch.Generator().manual_seed(0)
    ret = torch.zeros(20)
    for _ in range(200):
        tr = env.step(2 * torch.rand(20, 1, generator=g) - 1)
        ret += tr.reward
    env.close()
    se = float(ret.std()) / math.sqrt(20)
    print(f"Pendulum-v1: trained {final['env_steps']:,} environment steps in {wall:.0f} s: "
          f"{final['mean_return']:.1f} +- {final['return_se']:.1f} over 20 fresh episodes; a "
          f"uniform random policy {float(ret.mean()):.1f} +- {se:.1f}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--preset", default="default")
    s.add_argument("--steps", type=int, default=60)
    s.add_argument("--warmup", type=int, default=5)
    s.add_argument("--act-steps", type=int, default=300)
    s.add_argument("--sheeprl-python", default="/work/speer/bin/python")
    s.add_argument("--rounds", type=int, default=3, help="alternating rounds of (c) and (c')")
    t = sub.add_parser("threshold")
    t.add_argument("--preset", default="default")
    t.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    t.add_argument("--bar", type=float, default=475.0)
    t.add_argument("--compile", default="off", choices=("off", "on", "auto"))
    p = sub.add_parser("pendulum")
    for q in (s, t, p):
        q.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{describe_machine()}; {sys.argv[1:]}", flush=True)
    {"speed": speed, "threshold": threshold, "pendulum": pendulum}[args.what](args)


if __name__ == "__main__":
    main()
