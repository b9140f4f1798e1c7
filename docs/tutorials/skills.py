"""Tutorial 8: skills by mutual information (run by docs/hooks.py)."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path

import torch

from elbokit import recipes
from elbokit.divergence import forward_mi_reward, reverse_mi_bound
from elbokit.models.mi_toy import GaussianSkills, UniformSkillShift


def page(out) -> str:
    toy = GaussianSkills(8, radius=1.0, sigma=0.4)
    truth = toy.mutual_information()
    s, z = toy.sample(50_000, torch.Generator().manual_seed(0))
    bound, se = reverse_mi_bound(toy.posterior_logits(s), z)
    assert abs(bound - truth) < 4 * se
    shift = UniformSkillShift(1.0, 0.3)
    fwd_truth = shift.mutual_information()
    g = torch.Generator().manual_seed(1)
    zz, d = shift.sample(20_000, g)
    alt = 2 * torch.rand(20_000, 10, generator=g, dtype=torch.float64) - 1
    lq, lq_alt = shift.log_q(d, zz), shift.log_q(d[:, None], alt)
    with_true = float(forward_mi_reward(lq, lq_alt, include_true=True).mean())
    paper = float(forward_mi_reward(lq, lq_alt, include_true=False).mean())
    assert with_true < fwd_truth < paper

    kind = recipes.get_recipe("skills")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = kind.preset("default", {"train": {"epochs": 4, "progress": False}})
        run = recipes.train(kind, cfg, out=Path(tmp) / "diayn", say=lambda *a: None)
        r = json.loads((run / "eval.json").read_text())
        shutil.copy(run / "report" / "trajectories.png", out / "skills_trajectories.png")
    assert r["accuracy"] > 0.8 and r["mi_bound"] > 0.7 * math.log(8)
    return f"""# Skills by mutual information

With no reward, a set of skills z can be learned by making the states s they visit tell them
apart: maximize \\(I(S; Z)\\). Like the evidence, it is intractable, and like the ELBO it has a
variational lower bound with a learned distribution in place of a posterior.

## The reverse bound (DIAYN)

\\[ I(S; Z) = H(Z) - H(Z \\mid S) \\ge \\mathbb{{E}}[\\log q(z \\mid s)] - \\mathbb{{E}}[\\log p(z)], \\]

with a gap \\(\\mathbb{{E}}_s \\mathrm{{KL}}(p(z \\mid s) \\,\\|\\, q(z \\mid s))\\). Eight skills placing the state at
Gaussian clusters (radius 1, sd 0.4): I(S; Z) by 2-D quadrature = **{truth:.4f}** nats; the bound
with the Bayes-optimal discriminator over 50,000 draws: {bound:.4f} +- {se:.4f}
(`elbokit.divergence.reverse_mi_bound`). DIAYN's reward is \\(\\log q(z \\mid s_{{t+1}}) + \\log K\\).

## The forward bound (DADS)

\\(I(S'; Z \\mid S)\\) with a skill-dynamics model \\(q(s' \\mid s, z)\\) and the marginal approximated
by L prior skills. A skill \\(z \\sim U[-1, 1]\\) shifting the state by \\(z + N(0, 0.3^2)\\): the exact
I = **{fwd_truth:.4f}** nats; with L = 10 and the true z among the samples (the reference code)
the mean reward is {with_true:.4f} (a lower bound, at most log 11); without it (the paper)
{paper:.4f}, biased above (`elbokit.divergence.forward_mi_reward`).

## DIAYN's skills

`elbokit train skills` with 16,000 transitions (a fifth of the default run): on fresh rollouts
the discriminator is right on {r["accuracy"]:.3f} of all states and {r["accuracy_final"]:.3f} of final
states; the bound is {r["mi_bound"]:.3f} nats = {r["mi_fraction_of_log_k"]:.3f} log K, with
{r["effective_skills"]:.2f} effective skills.

![DIAYN skills](img/skills_trajectories.png)
"""
