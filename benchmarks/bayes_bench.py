"""Variational inference over parameters against the libraries people use for it.

    python benchmarks/bayes_bench.py bnn  [--epochs 30] [--threads 1]
    python benchmarks/bayes_bench.py uci  [--splits 20]       diabetes, the UCI protocol
    python benchmarks/bayes_bench.py gmm  [--sizes 1000 10000 100000] [--threads 1]

The peers: ``pip install --no-deps bayesian-torch blitz-bayesian-pytorch`` (without --no-deps
blitz pulls torchvision and a torch of its choosing).

bnn: Bayes by backprop on mnist5k (4,500 / 500), MLP 784-200-10, prior N(0, 1), Adam 1e-3,
batches of 100, the same loop, seed and data order for every contender, each with its library's
Adam (elbokit's fused one, as the bnn kind runs; torch's default for the peers):

    elbokit (local)     our BayesLinear with the local reparameterization trick, KL / N, as
                        the mnist5k preset has it (initial sigma 0.01)
    elbokit (weights)   our BayesLinear with one weight draw per batch, KL / N
    ..., compiled       the same loss compiled as ``--compile on`` compiles the bnn kind's step
                        (forward and backward one Inductor graph; the first epoch, which
                        compiles, is timed with the rest: its compile time printed apart)
    bayesian-torch      LinearReparameterization as its examples use it: cross-entropy +
                        (its KL, a MEAN over parameters) / batch size
    bayesian-torch, KL / N   the same layers with the KL summed over parameters and divided by N
    blitz               BayesianLinear with its default prior and complexity_cost_weight (1),
                        and again with 1/N (where blitz installs)

It prints steps per second (after the first epoch; the first epoch's time apart) and their
ratio to bayesian-torch's, the test NLL and ECE (15 bins) each reaches (20 weight draws per
prediction), and the wall time (training only) to first reach bayesian-torch's final test NLL,
as a ratio. gmm: CAVI against scikit-learn's BayesianGaussianMixture on the four-Gaussian data.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from elbokit.train.settings import describe_machine

PRIOR_SIGMA = 1.0


def _mnist5k():
    from elbokit.data.labelled import load_labelled

    d = load_labelled("mnist5k")
    return d.x_train.flatten(1), d.y_train, d.x_test.flatten(1), d.y_test


def _kl_sum_gaussian(mu, sigma):
    """sum KL(N(mu, sigma^2) || N(0, PRIOR_SIGMA^2)) (a reference, not elbokit's)."""
    s2 = PRIOR_SIGMA**2
    return (math.log(PRIOR_SIGMA) - sigma.log() + (sigma**2 + mu**2) / (2 * s2) - 0.5).sum()


class Contender:
    """A network with (logits, KL term of the loss) per forward, and its prediction."""

    name = ""

    def optimizer(self, params, lr):
        """Adam as the library's users run it: torch's default (for-each) Adam for the peers."""
        return torch.optim.Adam(params, lr=lr)

    def loss(self, x, y, n, batch):
        raise NotImplementedError

    def predict(self, x):
        return self.net(x)


class Ours(Contender):
    def __init__(self, sampling, compiled=False):
        from elbokit import recipes
        from elbokit.models.bnn import BNNConfig, Predictor, WeightPrior

        preset = recipes.get_recipe("bnn").preset("mnist5k").model  # its initial sigma, 0.01
        cfg = BNNConfig(hidden=(200,), sampling=sampling, prior_sigma=PRIOR_SIGMA, baselines=False,
                        init_sigma=preset.init_sigma)  # fmt: skip
        self.model = Predictor(cfg, (784,), 10, "classification", "bayes")
        self.net = self.model.net
        self.prior = WeightPrior("gaussian", PRIOR_SIGMA)
        self.name = f"elbokit ({sampling}{', compiled' if compiled else ''})"
        self.n = 0
        self.step = 0
        if compiled:  # as `--compile on` compiles the bnn kind's step
            from elbokit.train.compiled import CompiledStep

            self._loss = CompiledStep(lambda xy, step: self._eager_loss(*xy), self.name)

    def params(self):
        return self.model.parameters()

    def optimizer(self, params, lr):
        """elbokit's Adam, as the bnn kind steps it (fused where torch has it)."""
        from elbokit.train.learner import make_adam

        return make_adam(params, lr)

    def _eager_loss(self, x, y):
        from elbokit.models.bnn import kl_to_prior

        kl, _ = kl_to_prior(self.net, self.prior)
        return F.cross_entropy(self.net(x), y) + kl / self.n

    def _loss(self, xy, step):
        return self._eager_loss(*xy)

    def loss(self, x, y, n, batch):
        self.n, self.step = n, self.step + 1
        return self._loss((x, y), self.step)


class BayesianTorch(Contender):
    def __init__(self, scaled: bool):
        from bayesian_torch.layers import LinearReparameterization as L

        # prior_variance is used as the prior's standard deviation by bayesian-torch
        kw = dict(prior_mean=0.0, prior_variance=PRIOR_SIGMA)
        self.l1, self.l2 = L(784, 200, **kw), L(200, 10, **kw)
        self.net = self
        self.scaled = scaled
        self.name = "bayesian-torch, KL / N" if scaled else "bayesian-torch (its examples)"

    def params(self):
        return [*self.l1.parameters(), *self.l2.parameters()]

    def __call__(self, x):
        h, k1 = self.l1(x)
        out, k2 = self.l2(F.relu(h))
        self._kl = (k1, k2)
        return out

    def loss(self, x, y, n, batch):
        ce = F.cross_entropy(self(x), y)
        if not self.scaled:
            return ce + sum(self._kl) / batch  # the mean KL per parameter, over the batch size
        kl = sum(
            _kl_sum_gaussian(layer.mu_weight, F.softplus(layer.rho_weight))
            + _kl_sum_gaussian(layer.mu_bias, F.softplus(layer.rho_bias))
            for layer in (self.l1, self.l2)
        )
        return ce + kl / n


class Blitz(Contender):
    def __init__(self, scaled: bool):
        from blitz.modules import BayesianLinear

        kw = dict(
            prior_sigma_1=PRIOR_SIGMA, prior_pi=1.0
        )  # the same N(0, 1) prior (KL by sampling)
        self.seq = nn.Sequential(
            BayesianLinear(784, 200, **kw), nn.ReLU(), BayesianLinear(200, 10, **kw)
        )
        self.net = self.seq
        self.scaled = scaled
        self.name = "blitz, weight 1/N" if scaled else "blitz (its defaults)"

    def params(self):
        return self.seq.parameters()

    def loss(self, x, y, n, batch):
        from blitz.losses import kl_divergence_from_nn

        out = self.seq(x)
        weight = 1.0 / n if self.scaled else 1.0  # sample_elbo's complexity_cost_weight default
        return F.cross_entropy(out, y) + weight * kl_divergence_from_nn(self.seq)


@torch.no_grad()
def test_metrics(c: Contender, x, y, draws=20):
    from elbokit.evaluate.predictive import classification_metrics

    probs = torch.stack([c.predict(x).softmax(-1) for _ in range(draws)]).mean(0)
    return classification_metrics(probs, y)


def run_bnn(c: Contender, data, epochs, seed=0):
    xtr, ytr, xte, yte = data
    opt = c.optimizer(list(c.params()), 1e-3)
    n, batch = len(xtr), 100
    curve, trained, steps, first = [], 0.0, 0, 0.0
    for epoch in range(epochs):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        t = time.perf_counter()
        for idx in order.split(batch):
            opt.zero_grad(set_to_none=True)
            c.loss(xtr[idx], ytr[idx], n, batch).backward()
            opt.step()
            if epoch:
                steps += 1
        trained += time.perf_counter() - t
        first = first or trained
        curve.append((trained, test_metrics(c, xte, yte)["nll"]))
    # steps per second after the first epoch (which compiles, where a contender compiles)
    return {"steps_per_s": steps / (trained - first), "first_epoch_s": first, "curve": curve,
            **test_metrics(c, xte, yte, 50)}  # fmt: skip


def bnn(args) -> int:
    data = _mnist5k()
    args.epochs = args.epochs or 30
    makers = [
        lambda: Ours("local"),
        lambda: Ours("local", compiled=True),
        lambda: Ours("weights"),
        lambda: Ours("weights", compiled=True),
        lambda: BayesianTorch(False),
        lambda: BayesianTorch(True),
    ]
    try:
        import blitz  # noqa: F401

        makers += [lambda: Blitz(False), lambda: Blitz(True)]
    except ImportError:
        print(
            "blitz is not installed: pip install blitz-bayesian-pytorch (--no-deps) to include it"
        )
    rows = []
    for make in makers:
        torch.manual_seed(0)
        c = make()
        r = run_bnn(c, data, args.epochs)
        rows.append((c.name, r))
        print(
            f"  {c.name}: {r['steps_per_s']:.0f} steps/s, first epoch {r['first_epoch_s']:.1f} s, "
            f"test NLL {r['nll']:.4f}, ECE {r['ece']:.4f}",
            flush=True,
        )
    target = dict(rows)["bayesian-torch (its examples)"]["nll"]
    print(f"\nmnist5k, MLP 784-200-10, prior N(0, 1), {args.epochs} epochs of batches of 100, Adam 1e-3; "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip
    print(
        f"{'':<32} {'steps/s':>8} {'x bt':>6} {'test NLL':>9} {'ECE':>7} {'accuracy':>9} {'s to NLL ' + format(target, '.3f'):>16}"
    )
    bt_rate = dict(rows)["bayesian-torch (its examples)"]["steps_per_s"]
    base_time = None
    for name, r in rows:
        reach = next((t for t, nll in r["curve"] if nll <= target), None)
        if name == "bayesian-torch (its examples)":
            base_time = reach
        rows_time = "never" if reach is None else f"{reach:.1f}"
        r["reach"] = reach
        print(
            f"{name:<32} {r['steps_per_s']:8.0f} {r['steps_per_s'] / bt_rate:6.2f} {r['nll']:9.4f} {r['ece']:7.4f} {r['accuracy']:9.4f} {rows_time:>16}"
        )
    for name, r in rows:
        if r["reach"] is not None and base_time:
            print(
                f"  {name}: reaches bayesian-torch's final test NLL {base_time / r['reach']:.2f}x as fast"
            )
    return 0


def uci(args) -> int:
    """The diabetes protocol: 20 random 90/10 splits, each trained as `elbokit train bnn --preset
    diabetes --split i` (Bayes by backprop, a deterministic net and MC dropout of the same size on
    the same batches); mean and standard error over splits of each metric."""
    import json
    import tempfile
    from pathlib import Path

    from elbokit import recipes

    bnn_recipe = recipes.get_recipe("bnn")
    per = {}
    with tempfile.TemporaryDirectory() as d:
        for split in range(args.splits):
            train = {
                "progress": False,
                "threads": args.threads,
                **({"epochs": args.epochs} if args.epochs else {}),
            }
            cfg = bnn_recipe.preset("diabetes", {"data": {"split": split}, "train": train})
            out = Path(d) / f"split{split}"
            recipes.train(bnn_recipe, cfg, out=out, say=lambda *a: None)
            r = json.loads((out / "eval.json").read_text())
            for net in ("bnn", "det", "dropout"):
                for k in ("log_likelihood", "rmse", "coverage_95"):
                    per.setdefault((net, k), []).append(r[net][k])
            print(f"  split {split}: BBB log-lik {r['bnn']['log_likelihood']:.3f}, RMSE {r['bnn']['rmse']:.2f}, "
                  f"coverage {r['bnn']['coverage_95']:.3f}", flush=True)  # fmt: skip
    print(
        f"\ndiabetes, {args.splits} random 90/10 splits, {cfg.train.epochs} epochs (mean +- standard error over splits)"
    )
    print(f"{'':<22} {'test log-lik':>18} {'RMSE':>16} {'95% coverage':>16}")
    for net, label in (
        ("bnn", "Bayes by backprop"),
        ("det", "deterministic (MAP)"),
        ("dropout", "MC dropout"),
    ):
        cells = []
        for k in ("log_likelihood", "rmse", "coverage_95"):
            v = np.array(per[(net, k)])
            cells.append(f"{v.mean():9.3f} +- {v.std(ddof=1) / np.sqrt(len(v)):.3f}")
        print(f"{label:<22} {cells[0]:>18} {cells[1]:>16} {cells[2]:>16}")
    return 0


def gmm(args) -> int:
    """CAVI (elbokit.models.gmm.BayesianGMM.fit) against scikit-learn's BayesianGaussianMixture,
    full covariances, 10 components, the same priors (sklearn's defaults, which ours copy), both
    from k-means, stopping at the same criterion: a change of the bound below 1e-8 |ELBO| (ours
    relative, sklearn's absolute, set from our final ELBO). Both judged by our full ELBO."""
    from sklearn.metrics import adjusted_rand_score
    from sklearn.mixture import BayesianGaussianMixture

    from elbokit.data.clusters import four_gaussians
    from elbokit.models.gmm import BayesianGMM

    print(f"four-gaussians, 10 components, full covariances, tol 1e-8 relative; torch threads "
          f"{torch.get_num_threads()}")  # fmt: skip
    print(
        f"{'points':>8} {'':<14} {'seconds':>8} {'iters':>6} {'full ELBO (ours)':>18} {'ARI':>7} {'K eff':>6}"
    )
    for n in args.sizes:
        x, labels = four_gaussians(n, seed=0)
        t = time.perf_counter()
        ours = BayesianGMM(10).fit(x, max_iter=5000, tol=1e-8, init="kmeans", seed=0)
        t_ours = time.perf_counter() - t
        e_ours = ours.elbo(x)
        p = ours.priors
        bgm = BayesianGaussianMixture(
            n_components=10, covariance_type="full", weight_concentration_prior_type="dirichlet_distribution",
            weight_concentration_prior=float(p["alpha0"]), mean_precision_prior=float(p["beta0"]),
            mean_prior=p["m0"].numpy(), degrees_of_freedom_prior=float(p["nu0"]),
            covariance_prior=p["w0_inv"].numpy(), tol=1e-8 * abs(e_ours), max_iter=5000, random_state=0,
            reg_covar=0.0,
        )  # fmt: skip
        t = time.perf_counter()
        bgm.fit(x.numpy())
        t_sk = time.perf_counter() - t
        theirs = BayesianGMM.from_sklearn(bgm, x)
        for name, m, secs, iters in (
            ("elbokit CAVI", ours, t_ours, ours.n_iter),
            ("scikit-learn", theirs, t_sk, bgm.n_iter_),
        ):
            ari = adjusted_rand_score(labels.numpy(), m.predict(x).numpy())
            print(
                f"{n:>8} {name:<14} {secs:8.2f} {iters:>6} {m.elbo(x):18.4f} {ari:7.4f} {m.effective_components():>6}",
                flush=True,
            )
        print(f"{'':>8} time ratio sklearn / elbokit: {t_sk / t_ours:.2f}x; per iteration "
              f"{(t_sk / bgm.n_iter_) / (t_ours / ours.n_iter):.2f}x")  # fmt: skip
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=("bnn", "uci", "gmm"))
    ap.add_argument("--splits", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=0, help="bnn: 30; uci: the preset's")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(describe_machine())
    return {"bnn": bnn, "uci": uci, "gmm": gmm}[args.what](args)


if __name__ == "__main__":
    raise SystemExit(main())
