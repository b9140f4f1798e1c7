"""Tutorial 9: behaviour learned in imagination, the Dreamer agent (run by docs/hooks.py)."""

from __future__ import annotations

import torch

from elbokit.models.dreamer import ActorCritic, ActorCriticConfig, ReturnNorm, lambda_returns
from elbokit.models.world_model import WorldModel, WorldModelConfig
from elbokit.report._draw import save
from elbokit.report._mpl import pyplot


def page(out) -> str:
    # an imagined trajectory: reward 1 per step, the pole falls (continuation drops) at step 10
    h = 15
    reward = torch.ones(h)
    cont = torch.ones(h)
    cont[9:] = 0.0
    disc = 0.99 * cont
    value = torch.full((h + 1,), 60.0)  # a critic that believes in 60 more steps everywhere
    rets = {lam: lambda_returns(reward, value, disc, lam) for lam in (0.0, 0.95, 1.0)}
    mc = torch.tensor([sum(0.99**k for k in range(10 - t)) for t in range(10)])
    assert torch.allclose(rets[1.0][:10], mc)  # lambda = 1: the discounted sum of rewards
    assert torch.allclose(rets[0.0], reward + disc * value[1:])  # lambda = 0: one-step targets
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for lam, r in rets.items():
        ax.plot(range(h), r, "o-", ms=3, label=f"lambda = {lam}")
    ax.axvline(9, color="grey", lw=0.5)
    ax.set(
        xlabel="imagined step t", ylabel="R_t", title="lambda-returns: the episode ends at t = 10"
    )
    ax.legend()
    save(fig, out / "agent_lambda.png")

    # the return scale: early returns spread widely, late ones barely
    norm = ReturnNorm()
    g = torch.Generator().manual_seed(0)
    for _ in range(1000):
        norm.update(torch.rand(1000, generator=g) * 80)
    wide = float(norm.scale)
    for _ in range(1000):
        norm.update(90 + 0.3 * torch.rand(1000, generator=g))
    narrow = float(norm.scale)
    assert 70 < wide < 74 and narrow == 1.0

    # the world model takes no gradient from the actor's and critic's losses
    torch.manual_seed(0)
    wm = WorldModel(WorldModelConfig(obs_shape=(4,), action_dim=2, deter=16, hidden=16,
                                     groups=4, classes=4, embed=16, head_hidden=(16,)))  # fmt: skip
    ac = ActorCritic(ActorCriticConfig(hidden=(16,)), 32, 2, discrete=False)
    hz = (
        torch.randn(8, 16),
        torch.nn.functional.one_hot(torch.randint(4, (8, 4)), 4).flatten(1).float(),
    )
    actor_loss, critic_loss, _ = ac.losses(wm, *hz, torch.ones(8))
    (actor_loss + critic_loss).backward()
    untouched = all(p.grad is None for p in wm.parameters())
    actor_moved = all(p.grad is not None for p in ac.actor.parameters())
    assert untouched and actor_moved
    r95 = ", ".join(f"{float(x):.2f}" for x in rets[0.95][:10:3])
    return f"""# Behaviour learned in imagination

A world model (tutorial 5) predicts what follows an action. DreamerV2 and V3 use it to learn a
policy without touching the environment: from posterior states of replayed data, the prior is
rolled H = 15 steps forward under the actor; the reward head and the discount head (trained on
\\(\\gamma \\times\\) continuation) say what each imagined step is worth.

## lambda-returns

With the slow critic \\(v\\),

\\[ R_t = r_{{t+1}} + d_{{t+1}}\\left[(1 - \\lambda) v(s_{{t+1}}) + \\lambda R_{{t+1}}\\right], \\quad R_H = v(s_H), \\]

a mix of one-step targets (\\(\\lambda = 0\\)) and the discounted sum of the imagined rewards
(\\(\\lambda = 1\\), bootstrapped at the horizon). An imagined trajectory whose pole falls at step
10, with a critic that believes in 60 more steps everywhere: at \\(\\lambda = 1\\) the returns are
exactly the discounted step counts to the fall (checked here), at \\(\\lambda = 0\\) they trust the
critic; DreamerV2's 0.95 sits between (R_0, R_3, R_6, R_9 = {r95}).

![lambda-returns](img/agent_lambda.png)

## The return scale (DreamerV3)

The actor's advantage is divided by \\(S = \\max(1, P_{{95}} - P_{{5}})\\) of the returns, each
percentile an average with decay 0.99: returns spread over [0, 80] give S = {wide:.1f}; once every
return is near 90 (a balanced pole), S = {narrow:.0f}: small differences are not blown up into
large advantages (`elbokit.models.dreamer.ReturnNorm`).

## Who learns from what

The actor's and the critic's losses pass through the world model (for continuous actions the
actor's gradient flows through its dynamics), but its parameters receive no gradient from them:
here, after a backward pass of both losses, every world-model gradient is
{"empty" if untouched else "set"} and every actor gradient is set. Discrete actions (CartPole)
use REINFORCE with the scaled advantage; continuous ones backpropagate the return.

## CartPole

`elbokit train agent` learns CartPole-v1 from its state vector and stops once 20 fresh episodes
average 475. With `python benchmarks/agent_bench.py threshold --seeds 0 1 2` (not computed here:
2 threads of the Zen 4 EPYC of `docs/benchmarks.md`) every seed reached 500 +- 0 after 8,000 to
10,000 environment steps and 751 to 1,001 gradient steps: a median of 63 s of training.

![return against environment steps and training time](../images/agent_cartpole_returns.png)

Imagination beside a real episode under the same actions, after 5 observed steps: the model
keeps the rhythm of the pushes and drifts in what the actions do not pin down.

![open loop](../images/agent_cartpole_open_loop.png)
"""
