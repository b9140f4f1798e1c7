"""The skill MI bounds against ground truth: Gaussian skill clusters (I by 2-D quadrature) and a
uniform skill shifting a state (I by 1-D quadrature)."""

import math

import pytest
import torch

from elbokit.divergence import forward_mi_reward, reverse_mi_bound, reverse_mi_reward
from elbokit.models.mi_toy import GaussianSkills, UniformSkillShift


def test_gaussian_skills_mutual_information_limits_and_monte_carlo():
    # far-apart clusters: every state names its skill, I = H(Z) = log K; one cluster: I = 0
    assert GaussianSkills(8, radius=5.0, sigma=0.1).mutual_information() == pytest.approx(
        math.log(8), abs=1e-6
    )
    assert GaussianSkills(4, radius=0.0, sigma=1.0).mutual_information() == pytest.approx(
        0, abs=1e-6
    )
    # two clusters at +-r on a line: I = log 2 - E[H(p(z|s))], a 1-D integral done by scipy apart
    from scipy import integrate, stats

    r, s = 1.0, 0.8

    def integrand(x):
        p1, p2 = stats.norm.pdf(x, r, s), stats.norm.pdf(x, -r, s)
        post = p1 / (p1 + p2)
        h = -sum(q * math.log(q) for q in (post, 1 - post) if q > 0)
        return 0.5 * (p1 + p2) * h

    expected = math.log(2) - integrate.quad(integrand, -12, 12, points=(-r, r))[0]
    assert GaussianSkills(2, radius=r, sigma=s).mutual_information() == pytest.approx(
        expected, abs=1e-6
    )


def test_reverse_bound_with_the_bayes_optimal_discriminator_equals_the_truth():
    toy = GaussianSkills(8, radius=1.0, sigma=0.4)
    truth = toy.mutual_information()
    assert 0.5 < truth < math.log(8) - 0.5  # a toy where the bound has room on both sides
    s, z = toy.sample(100_000, torch.Generator().manual_seed(3))
    bound, se = reverse_mi_bound(toy.posterior_logits(s), z)
    assert abs(bound - truth) < 4 * se, (bound, se, truth)


def test_a_trained_discriminator_bound_lies_below_the_truth_and_approaches_it():
    toy = GaussianSkills(8, radius=1.0, sigma=0.4)
    truth = toy.mutual_information()
    g = torch.Generator().manual_seed(0)
    s_test, z_test = toy.sample(50_000, g)
    torch.manual_seed(0)
    disc = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.Tanh(), torch.nn.Linear(64, 8))
    opt = torch.optim.Adam(disc.parameters(), lr=3e-3)
    bounds = []
    for step in range(1, 1501):
        s, z = toy.sample(512, g)
        loss = torch.nn.functional.cross_entropy(disc(s.float()), z)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step in (25, 1500):
            with torch.no_grad():
                bounds.append(reverse_mi_bound(disc(s_test.float()), z_test))
    (early, _), (late, se_late) = bounds
    # below the truth (the gap is E_s KL(p(z|s) || q(z|s)) >= 0), and closer after training
    assert early < truth - 0.1
    assert late <= truth + 3 * se_late
    assert truth - late < 0.03
    assert truth - late < (truth - early) / 5


def test_reverse_reward_is_log_q_plus_log_k_and_checks_its_input():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    z = torch.tensor([0, 2])
    log_q = torch.log_softmax(logits, -1)[torch.arange(2), z]
    torch.testing.assert_close(reverse_mi_reward(logits, z), log_q + math.log(3))
    torch.testing.assert_close(reverse_mi_reward(logits, z, with_log_k=False), log_q)
    # a discriminator at chance scores zero, one better than chance scores above zero
    assert reverse_mi_reward(logits, z)[1] == pytest.approx(0.0, abs=1e-6)
    assert reverse_mi_reward(logits, z)[0] > 0
    with pytest.raises(ValueError, match=r"z holds the skill 3; expected indices in 0..2"):
        reverse_mi_reward(logits, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"expected z of shape \(2,\)"):
        reverse_mi_reward(logits, torch.tensor([0, 1, 2]))


def _forward(toy, n, L, g):
    z, d = toy.sample(n, g)
    alt = 2 * torch.rand(n, L, generator=g, dtype=torch.float64) - 1
    lq, lq_alt = toy.log_q(d, z), toy.log_q(d[:, None], alt)
    return (forward_mi_reward(lq, lq_alt, include_true=True),
            forward_mi_reward(lq, lq_alt, include_true=False), lq, lq_alt)  # fmt: skip


def test_forward_reward_both_forms_against_the_exact_mutual_information():
    toy = UniformSkillShift(scale=1.0, sigma=0.3)
    truth = toy.mutual_information()
    g = torch.Generator().manual_seed(5)
    n = 20_000
    with_true, paper, lq, lq_alt = _forward(toy, n, 10, g)
    # the reference code's form: the true z among L + 1 terms, at most log(L + 1), below I on
    # average (an InfoNCE bound); the same number as its own formula
    # log(L + 1) - log(1 + sum_i exp(log q_i - log q))
    assert float(with_true.max()) <= math.log(11) + 1e-9
    reference = math.log(11) - torch.log1p(torch.exp(lq_alt - lq[:, None]).sum(1))
    torch.testing.assert_close(with_true, reference)
    se = float(with_true.std()) / math.sqrt(n)
    assert float(with_true.mean()) < truth - 4 * se
    # the paper's form: L prior samples only, unbounded, above I on average at small L (Jensen)
    se_p = float(paper.std()) / math.sqrt(n)
    assert float(paper.mean()) > truth + 4 * se_p
    assert float(paper.mean() - with_true.mean()) > 0.1
    # with many prior samples both converge to I
    with_true, paper, _, _ = _forward(toy, n, 2000, g)
    for r in (with_true, paper):
        assert abs(float(r.mean()) - truth) < 4 * float(r.std()) / math.sqrt(n) + 0.005


def test_forward_reward_checks_shapes():
    with pytest.raises(ValueError, match=r"expected \(B,\) and \(B, L\)"):
        forward_mi_reward(torch.zeros(3), torch.zeros(4, 5))
    with pytest.raises(ValueError, match="L = 0"):
        forward_mi_reward(torch.zeros(3), torch.zeros(3, 0))


def test_reverse_bound_refuses_skills_that_are_not_indices():
    logits = torch.zeros(4, 3)
    with pytest.raises(
        ValueError, match="z has dtype torch.float32; expected integer skill indices"
    ):
        reverse_mi_reward(logits, torch.tensor([0.5, 0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"expected z of shape \(4,\)"):
        reverse_mi_bound(logits, torch.zeros(4, 1, dtype=torch.long))
    # lists are taken as tensors
    assert reverse_mi_bound([[0.0, 0.0], [0.0, 0.0]], [0, 1])[0] == pytest.approx(0.0, abs=1e-7)
