"""Independent references the tests compare elbokit against, and shared helpers for runs."""

import numpy as np
import torch


def dense_gaussian_kl(mu_p, cov_p, mu_q, cov_q) -> float:
    """KL(N(mu_p, cov_p) || N(mu_q, cov_q)) from the textbook formula, numpy float64.

    0.5 [tr(S_q^-1 S_p) + (m_q - m_p)^T S_q^-1 (m_q - m_p) - n + log|S_q| - log|S_p|]
    (an explicit inverse is fine in a reference for well-conditioned test matrices).
    """
    mu_p, cov_p, mu_q, cov_q = (np.asarray(a, dtype=np.float64) for a in (mu_p, cov_p, mu_q, cov_q))
    inv_q = np.linalg.inv(cov_q)
    d = mu_q - mu_p
    n = mu_p.shape[-1]
    _, logdet_p = np.linalg.slogdet(cov_p)
    _, logdet_q = np.linalg.slogdet(cov_q)
    return 0.5 * (np.trace(inv_q @ cov_p) + d @ inv_q @ d - n + logdet_q - logdet_p)


def within_stderr(value, estimate, k: float = 4.0, atol: float = 1e-6) -> bool:
    """Whether every closed-form value lies within k standard errors of a Monte Carlo estimate."""
    return bool(((value - estimate.value).abs() <= k * estimate.stderr + atol).all())


def train_debug(out, *options: str) -> int:
    """``elbokit train vae --preset debug --no-progress --out OUT [options]``; its exit status."""
    from elbokit.cli import main

    return main(["train", "vae", "--preset", "debug", "--no-progress", "--out", str(out), *options])


def build(recipe, cfg, run_dir):
    """A recipe's data and fresh learner for ``cfg``, as a new process would build them."""
    from elbokit.train.distributed import World

    return recipe.build(cfg, run_dir, world=World(), say=lambda *a: None)


def weights(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same(a: dict, b: dict, what: str = "") -> None:
    """Two dicts of tensors equal bit for bit, key for key (``what`` names them in a failure)."""
    assert a.keys() == b.keys(), what
    for k, v in a.items():
        assert torch.equal(v, b[k]), f"{what} {k}".strip()


def assert_same_checkpoints(a, b, names) -> None:
    """The last checkpoints of runs ``a`` and ``b`` are the same step and hold the same tensors in
    each of the files ``names`` (NAME.safetensors): a resumed run against an uninterrupted one."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    last_a = json.loads((Path(a) / "state.json").read_text())["checkpoint"]
    last_b = json.loads((Path(b) / "state.json").read_text())["checkpoint"]
    assert last_a == last_b
    for name in names:
        assert_same(load_file(Path(a) / last_a / f"{name}.safetensors"),
                    load_file(Path(b) / last_b / f"{name}.safetensors"), name)  # fmt: skip
