"""The GPU path (skipped without CUDA; benchmarks/gpu_check.sh runs these with ``-m cuda``):
the closed forms, a VAE run, exact resume and the importance-sampled evaluation on cuda,
checked against the same computations on the CPU."""

import json

import pytest
import torch

from elbokit import categorical_kl, recipes, vae_kl
from elbokit.divergence import normal_kl
from references import weights

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine"),
]
QUIET = lambda *a: None  # noqa: E731
VAE = recipes.get_recipe("vae")


def test_closed_forms_on_cuda_equal_the_cpus():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(64, 8, generator=g), torch.randn(64, 8, generator=g)
    p, q = 3 * torch.randn(64, 10, generator=g), 3 * torch.randn(64, 10, generator=g)
    cases = [(vae_kl, (mu, logvar)), (categorical_kl, (p, q)),
             (normal_kl, (mu, logvar.exp(), logvar, mu.exp()))]  # fmt: skip
    for fn, args in cases:
        on_gpu = fn(*(a.cuda() for a in args)).cpu()
        torch.testing.assert_close(on_gpu, fn(*args), rtol=1e-5, atol=1e-5)


def test_a_vae_run_on_cuda_learns_resumes_exactly_and_evaluates(tmp_path):
    cfg = VAE.preset("debug", {"train": {"device": "cuda", "progress": False, "epochs": 4,
                                         "checkpoint_every": 10}, "evaluate": {"eval_k": 0}})  # fmt: skip
    a = recipes.train(VAE, cfg, out=tmp_path / "a", say=QUIET)
    b = recipes.train(VAE, cfg, out=tmp_path / "b", stop_at=25, say=QUIET)
    recipes.train(VAE, resume=b, say=QUIET)
    wa = weights(recipes.open_run(a).learner()[0].model)
    wb = weights(recipes.open_run(b).learner()[0].model)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0, msg=k)
    lines = [json.loads(line) for line in (a / "metrics.jsonl").read_text().splitlines()]
    elbos = [line["test/elbo"] for line in lines if "test/elbo" in line]
    assert elbos[-1] > elbos[0]
    gpu = recipes.evaluate(a, {"k": 200, "device": "cuda"}, say=QUIET)
    cpu = recipes.evaluate(a, {"k": 200}, say=QUIET)
    se = (gpu["log_likelihood_stderr"] ** 2 + cpu["log_likelihood_stderr"] ** 2) ** 0.5
    assert abs(gpu["log_likelihood"] - cpu["log_likelihood"]) < 4 * se + 0.05


def test_bf16_on_cuda_trains_within_a_nat_of_fp32(tmp_path):
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    elbo = {}
    for precision in ("fp32", "bf16"):
        cfg = VAE.preset("debug", {"train": {"device": "cuda", "progress": False, "epochs": 4,
                                             "precision": precision}, "evaluate": {"eval_k": 0}})  # fmt: skip
        run = recipes.train(VAE, cfg, out=tmp_path / precision, say=QUIET)
        lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        elbo[precision] = [line["test/elbo"] for line in lines if "test/elbo" in line][-1]
    assert abs(elbo["bf16"] - elbo["fp32"]) < 1.0, elbo
