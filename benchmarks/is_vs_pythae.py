"""Importance-sampled log-likelihood: elbokit (fp32 and bf16) against pythae's get_nll, one run.

    python benchmarks/is_vs_pythae.py [--run RUN] [--k 1000] [--threads 2]

The same trained weights for everyone: a run of ``elbokit train vae`` (``--run``), or a model
trained here for 10 epochs on mnist5k (MLP 784-512-512-(32 Gaussian), Bernoulli). The same 500
test digits, binarized once. Prints seconds, ratios, and each estimate of the mean log p(x) with
its Monte Carlo standard error (pythae gives none: its spread is estimated here from the
per-image estimates of elbokit at the same k). Needs pythae (pip install pythae) for the peer.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time

import torch

from elbokit import recipes
from elbokit.data import load_data
from elbokit.evaluate import importance_log_likelihood
from elbokit.models.vae import VAE, VAEConfig
from elbokit.objectives import ELBO
from elbokit.train import AdamConfig, ObjectiveLearner, TrainConfig, Trainer
from elbokit.train.settings import bf16_is_native, describe_machine


def trained_model(run: str | None) -> VAE:
    if run:
        return recipes.open_run(run).learner()[0].model
    data = load_data("mnist5k")
    torch.manual_seed(0)
    model = VAE(VAEConfig())
    with tempfile.TemporaryDirectory() as d:
        learner = ObjectiveLearner(model, ELBO(), AdamConfig())
        Trainer(TrainConfig(epochs=10, progress=False, eval_every=10), d).fit(learner, data)
    return model


def pythae_nll(model: VAE, x: torch.Tensor, k: int) -> tuple[float, float] | None:
    try:
        from pythae.models import VAE as PVAE
        from pythae.models import VAEConfig as PConfig
        from pythae.models.base.base_utils import ModelOutput
        from pythae.models.nn import BaseDecoder, BaseEncoder
    except ImportError:
        return None
    latent = model.latent.dim

    class Enc(BaseEncoder):
        def forward(self, xb):
            h = model.encoder(xb.flatten(1))
            return ModelOutput(embedding=h[:, :latent], log_covariance=h[:, latent:])

    class Dec(BaseDecoder):
        def forward(self, z):
            return ModelOutput(
                reconstruction=torch.sigmoid(model.decoder(z)).view(-1, *model.data_shape)
            )

    p = PVAE(
        PConfig(input_dim=model.data_shape, latent_dim=latent, reconstruction_loss="bce"),
        encoder=Enc(),
        decoder=Dec(),
    )
    p.eval()
    torch.manual_seed(1)
    t = time.perf_counter()
    with torch.no_grad():
        nll = p.get_nll(x, n_samples=k, batch_size=100)
    seconds = time.perf_counter() - t
    # Despite its name, get_nll returns the mean log p(x) over the images (a negative number);
    # it drops the -D/2 log 2 pi terms of log p(z) and log q(z|x), which cancel.
    return float(nll), seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--run", default=None, help="a run of elbokit train vae (default: train one here)"
    )
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = trained_model(args.run).eval()
    data = load_data("mnist5k")
    x = data.as_float(data.test, torch.Generator().manual_seed(0))  # 500 digits, binarized once
    print(describe_machine())
    print(f"{len(x)} test digits, k = {args.k}")
    native = bf16_is_native()
    if not native:
        print("bf16 is emulated on this CPU (measured): elbokit bf16 is not timed")
    rows = {}
    for name, precision in (("elbokit fp32", "fp32"), ("elbokit bf16", "bf16"))[
        : 2 if native else 1
    ]:
        t = time.perf_counter()
        ll = importance_log_likelihood(
            model, x, args.k, generator=torch.Generator().manual_seed(2), precision=precision
        )
        rows[name] = (ll.mean, ll.mean_stderr, time.perf_counter() - t)
    peer = pythae_nll(model, x, args.k)
    if peer is not None:
        # pythae reports no error: give it elbokit fp32's standard error at the same k
        rows["pythae get_nll"] = (peer[0], rows["elbokit fp32"][1], peer[1])
    ref_time = rows["pythae get_nll"][2] if "pythae get_nll" in rows else None
    for name, (mean, se, seconds) in rows.items():
        speed = f"{ref_time / seconds:5.2f}x pythae's speed" if ref_time else ""
        print(f"  {name:<15} log p(x) = {mean:9.3f} +- {se:.3f} nats   {seconds:6.2f} s   {speed}")
    if "pythae get_nll" in rows:
        p_mean, p_se, _ = rows["pythae get_nll"]
        for name in [n for n in ("elbokit fp32", "elbokit bf16") if n in rows]:
            mean, se, _ = rows[name]
            z = (mean - p_mean) / math.hypot(se, p_se)
            print(f"  {name} - pythae: {mean - p_mean:+.3f} nats ({z:+.1f} standard errors)")
    if "elbokit bf16" in rows:
        f32, b16 = rows["elbokit fp32"][0], rows["elbokit bf16"][0]
        print(f"  bf16 - fp32: {b16 - f32:+.3f} nats")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
