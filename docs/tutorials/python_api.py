"""Tutorial: a trained run used from Python (``elbokit.train``, ``elbokit.load``), computed while
the site is built (run by docs/hooks.py)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

import elbokit
from elbokit.data import load_data
from elbokit.report._mpl import pyplot


def _grid(images: torch.Tensor, path: Path, title: str) -> None:
    plt = pyplot()
    n = len(images)
    fig, axes = plt.subplots(1, n, figsize=(n * 0.9, 1.3))
    for ax, img in zip(axes, images, strict=True):
        ax.imshow(img[0].numpy(), cmap="gray_r", vmin=0, vmax=1)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def page(out) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "vae"
        t0 = time.perf_counter()
        elbokit.train("vae", out=run, latent_dim=8, hidden=[256], epochs=3, threads=1,
                              eval_k=0, progress=False, say=lambda *a: None)  # fmt: skip
        trained = time.perf_counter() - t0
        t0 = time.perf_counter()
        m = elbokit.load(run)  # what a later session does: config.json and the weights
        loaded = time.perf_counter() - t0
        samples = m.sample(10, seed=0)
        _grid(samples, out / "python_samples.png", "m.sample(10, seed=0)")
        digits = load_data("mnist5k", binarize="none", seed=0).test[:10]  # uint8, never trained on
        q = m.encode(digits)
        recon = m.reconstruct(digits)
        _grid(torch.cat([digits.float() / 255, recon]), out / "python_reconstructions.png",
              "10 held-out digits, then m.reconstruct(digits)")  # fmt: skip
        ll = m.log_prob(digits, k=1000, seed=0)
        elbo = m.elbo(digits, seed=0)
        flipped = m.log_prob(digits.flip(-2), k=1000, seed=0)
        assert ll.mean > elbo.mean().item()  # importance sampling tightens the bound
        assert ll.mean > flipped.mean + 20  # upside-down digits are not what it learned
    rows = "\n".join(f"| {i} | {ll.value[i]:.2f} +- {ll.stderr[i]:.2f} | {elbo[i]:.2f} | "
                     f"{flipped.value[i]:.2f} |" for i in range(5))  # fmt: skip
    return f"""# Trained runs from Python

Everything `elbokit train` does is one call from Python, and a trained run is an object with the
verbs of its kind. `elbokit.train(KIND, out=..., **options)` takes the kind's options as the
command line names them, with underscores (a misspelt one is answered with the closest name,
before anything is written), trains, evaluates as its config asks, and returns the run loaded:

```python
import elbokit

m = elbokit.train("vae", out="runs/mine", latent_dim=8, hidden=[256], epochs=3)
m = elbokit.load("runs/mine")          # later: config.json and the latest checkpoint
```

Here that run (mnist5k, MLP 784-256-8, 3 epochs, 1 thread) trained in {trained:.1f} s; loading it
again took {loaded * 1000:.0f} ms and read no training data: what the model needs of its data (the
image shape, the binarization) is saved with the run, so the data folder may move.

## Sample, encode, reconstruct

```python
x = m.sample(10, seed=0)          # (10, 1, 28, 28): decoded means of p(x | z), z ~ p(z)
q = m.encode(digits)              # q(z | x) as a torch Distribution
q.mean.shape, q.stddev.shape      # {tuple(q.mean.shape)}, {tuple(q.stddev.shape)}
m.reconstruct(digits)             # decoded from E_q[z | x]
```

Inputs are 8-bit pixels (uint8) or floats in [0, 1], binarized as in training.

![samples](img/python_samples.png)

![reconstructions](img/python_reconstructions.png)

## Score new digits

`m.log_prob(x, k)` estimates log p(x) by importance sampling with k draws from q(z | x), with its
Monte Carlo standard error per image; `m.elbo(x)` is the one-sample bound it tightens. The same
digits turned upside down are not what the model learned, and on average it says so (a 0 turned
over is still much like a 0):

| held-out digit | log p(x), k = 1000 (nats) | ELBO (nats) | upside down: log p(x) |
|---|---|---|---|
{rows}

Over the ten: log p(x) {ll.mean:.2f} +- {ll.mean_stderr:.2f}, ELBO {elbo.mean():.2f}, upside
down {flipped.mean:.2f} nats.

## Every kind

| kind | verbs of `elbokit.load(RUN)` |
|---|---|
| vae, linear-gaussian | `sample`, `encode`, `decode`, `reconstruct`, `elbo`, `log_prob`; linear-gaussian also the exact `posterior` and `log_evidence` |
| diffusion | `sample`, `bound` (every term of the bound), no tractable `log_prob` |
| world-model | `observe` (the RSSM's states of a recorded sequence), `imagine` (decoded dreams under actions) |
| coin, normal-mean | the exact `posterior()` and `log_evidence()` beside the fitted `q()` and its `elbo()` |
| gmm | scikit-learn's `predict`, `predict_proba`, `score_samples` (the posterior predictive), `score` |
| bnn | `predict` (mean with aleatoric and epistemic spread, in the targets' units), `predict_proba` |
| agent | `act(obs, state)` like stable-baselines3's `predict`, `play(env, episodes)` |
| skills | `act(obs, skill)`, `skill_policy(k)`, `play(k, env)` |

Every loaded run also has `evaluate(data=None, **options)`: the kind's evaluation, on its own test
data or another source the kind reads (`elbokit eval RUN --data DATA` on the command line), written
beside the run's eval.json, and returned as that file's dict (printed with its per-image lists cut
to their first values and their length).
"""
