"""The ``vae`` kind: a VAE on images, judged by importance sampling and collapse diagnostics.

    elbokit train vae                                   mnist5k, MLP 784-512-512-(32 Gaussian)
    elbokit train vae --preset debug                    seconds, for trying things and tests
    elbokit train vae --data digits --latent-dim 2 --beta 4 --epochs 50
    elbokit train vae --resume runs/vae-mnist5k-...     continue an interrupted run
    elbokit eval RUN [--k 1000]  /  elbokit report RUN

Its evaluation: log p(x) by importance sampling with its standard error (bits/dim for 8-bit
data), the test ELBO and its gap, KL per unit, active units, I(x; z). Its report: samples,
reconstructions, traversals, the latent map, training curves, KL bars.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from elbokit.config import ConfigError, Section, opt
from elbokit.data import ImageDataConfig
from elbokit.evaluate import diagnose, importance_log_likelihood
from elbokit.evaluate.diagnostics import diagnose_layers
from elbokit.evaluate.ood import ood_table, typicality
from elbokit.models.hvae import HierarchicalVAE
from elbokit.models.vae import VAE, VAEConfig
from elbokit.objectives import ELBO, ObjectiveConfig
from elbokit.recipes.base import Built, Recipe, Run, derive
from elbokit.recipes.loaded import LatentLoaded, as_images, as_pixels
from elbokit.train.learner import AdamConfig, ObjectiveLearner
from elbokit.train.loop import TrainConfig
from elbokit.train.settings import PRECISIONS, check_device, check_device_name, resolve_precision

# eager / compiled fp32 training step, measured by benchmarks/vae_vs_peers.py (AVX-512 Zen 5 EPYC,
# 2 threads, 2026-12-07): 1.01x and 1.07x in two runs, their mean; --compile auto leaves it eager
COMPILE_SPEEDUP = {"cpu": 1.04}
# bf16 / fp32 training step of the main job's VAE per bf16 class (--precision auto takes bf16 from
# 1.1x): avx512_bf16 1.27x on a Zen 4 EPYC (2026-11-30) and 1.67x on a Zen 5 (2026-12-07,
# benchmarks/precision_bench.py), the lower kept; amx 1.07x (0.31 -> 0.29 s/epoch, issue 27's
# AMX Xeon) and 1.67x (0.30 -> 0.18, docs/benchmarks.md's 2026-11-22 table), the lower kept.
# Test ELBO bf16 - fp32: +0.04 +- 0.20 nats over 24 paired seeds (docs/benchmarks.md)
BF16_SPEEDUP = {"avx512_bf16": 1.27, "amx": 1.07}


@dataclass(frozen=True)
class VAEAfterTraining(Section):
    eval_k: int = opt(
        1000,
        "then evaluate with this many importance samples and write the report (0: neither)",
        ge=0,
    )


@dataclass(frozen=True)
class VAERunConfig(Section):
    data: ImageDataConfig = opt(default_factory=ImageDataConfig, help="the images")
    model: VAEConfig = opt(default_factory=VAEConfig, help="the VAE")
    objective: ObjectiveConfig = opt(default_factory=ObjectiveConfig, help="what it maximizes")
    optim: AdamConfig = opt(default_factory=AdamConfig, help="the optimizer")
    train: TrainConfig = opt(default_factory=TrainConfig, help="the training loop")
    evaluate: VAEAfterTraining = opt(default_factory=VAEAfterTraining, help="after training")


LLR_SAMPLES = 100  # importance samples of each LLR>j bound unless --llr-samples says otherwise


@dataclass(frozen=True)
class VAEEvalOptions(Section):
    k: int = opt(1000, "importance samples per test image", ge=1)
    limit: int = opt(0, "evaluate only the first N test images (0: all)", ge=0)
    seed: int = opt(0, "seed of the importance samples and binarization", ge=0)
    precision: str = opt(
        "fp32",
        "of the importance sampling: fp32; bf16 (the decoder under autocast; refused "
        "where bf16 is emulated); auto (bf16 where the CPU has bf16 instructions, else fp32)",
        choices=PRECISIONS,
    )
    device: str = opt("cpu", "cpu, cuda, cuda:1, ...")
    ood: str = opt(
        "", "also score this data (any the vae kind reads, e.g. mnist5k for a Fashion-MNIST run) "
        "against the test set as out of distribution: AUROC, AUPRC and FPR at 80% TPR of each "
        "score (ELBO, log p(x), typicality), with histograms",
    )  # fmt: skip
    llr_samples: int = opt(
        LLR_SAMPLES, "with --ood: importance samples of each bound of a top-down hierarchy's LLR>j "
        "scores (at most --k; 1: the one-sample ratio, fast on large models)", ge=1,
    )  # fmt: skip

    def validate(self):
        check_device_name(self.device)
        if self.llr_samples != LLR_SAMPLES and not self.ood:
            detail = "it sets the LLR>j scores of --ood DATA; give --ood too"
            raise ConfigError(f"llr_samples = {self.llr_samples}: {detail}", field="llr_samples",
                              value=self.llr_samples, detail=detail)  # fmt: skip


class LoadedVAE(LatentLoaded):
    """A trained VAE (``elbokit.load``): ``sample``, ``encode``, ``decode``, ``reconstruct``,
    ``elbo``, ``log_prob`` (``LatentLoaded``) on images of the run's shape, given as 8-bit
    pixels (uint8, 0..255) or floats in [0, 1]; binarized as in training where the run
    binarized (a Bernoulli draw per pixel from ``seed``)."""

    def prepare(self, x, what: str = "x", seed: int = 0) -> torch.Tensor:
        x = as_images(as_pixels(x, what, device=self.device), self.model.data_shape, what)
        if self.config.data.binarize != "none" and not bool(((x == 0) | (x == 1)).all()):
            x = torch.bernoulli(
                x.clamp(0, 1), generator=torch.Generator(x.device).manual_seed(seed)
            )
        self.model.likelihood.check_data(x, what)
        return x


class VAERecipe(Recipe):
    headline = "test/elbo:max"  # what a study optimizes by default
    name = "vae"
    help = "a VAE on images (mnist5k by default); --preset debug runs in seconds"
    config = VAERunConfig
    eval_options = VAEEvalOptions
    preset_notes: ClassVar[dict[str, str]] = {
        "default": "mnist5k, MLP 784-512-512-(32 Gaussian), 30 epochs",
        "debug": "scikit-learn's 8x8 digits, tiny nets, 2 epochs: seconds",
        "fashion": "the full Fashion-MNIST (60,000 / 10,000, apt's dataset-fashion-mnist), "
        "dynamically binarized, nats; 20 epochs; add --layers 2 for the hierarchical VAE",
        "fashion-8bit": "the full Fashion-MNIST, 8-bit grey values, discretized logistic, bits/dim; 20 epochs",
        "fashion-hvae": "the full Fashion-MNIST, binarized, a 3-layer convolutional hierarchy (z_1 "
        "4x14x14, z_2 4x7x7, z_3 32; 16-32 channels), 2 free nats per layer, KL warm-up over "
        "6,000 steps, 100 epochs (45 min on 2 cores): the model whose LLR>k tells MNIST from Fashion-MNIST "
        "(elbokit eval RUN --ood mnist5k)",
    }
    presets: ClassVar[dict[str, dict]] = {
        "default": {},
        "debug": {
            "data": {"source": "digits"},
            "model": {"latent_dim": 4, "hidden": (64,), "channels": (8, 16)},
            "train": {"epochs": 2, "batch_size": 50, "checkpoint_every": 20},
            "evaluate": {"eval_k": 50},
        },
        "fashion": {"data": {"source": "fashion-mnist"}, "train": {"epochs": 20}},
        "fashion-8bit": {
            "data": {"source": "fashion-mnist", "binarize": "none"},
            "model": {"likelihood": "discretized-logistic"},
            "train": {"epochs": 20},
        },
        "fashion-hvae": {
            "data": {"source": "fashion-mnist"},
            "model": {"layers": 3, "arch": "conv", "channels": (16, 32)},
            "objective": {
                "free_bits": 2.0,
                "free_bits_mode": "per_layer",
                "kl_schedule": "linear",
                "kl_warmup": 6000,
            },
            "train": {"epochs": 100},
        },
    }

    sweeps: ClassVar[dict[str, str]] = {"beta": "objective.beta"}
    loaded = LoadedVAE

    def units(self, cfg):
        return {"test/elbo": "nats", "test/recon": "nats", "test/kl": "nats"}

    def default_out(self, cfg):
        return f"runs/vae-{Path(cfg.data.source).name}"

    def sweep_figure(self, name, points, folder):
        from elbokit.report.vae import rate_distortion

        return rate_distortion(points, folder / "rate_distortion.png")

    def data(self, cfg, run_dir=None):
        return cfg.data.load(cfg.train.seed)

    def learner(self, cfg, data) -> ObjectiveLearner:
        # the annealing schedules run over the steps of training; a saved run rebuilt
        # without its data (data None) is only evaluated, where they do not apply
        per_epoch = 1 if data is None else data.num_batches("train", cfg.train.batch_size)
        total = cfg.train.epochs * per_epoch
        model = VAE(cfg.model) if cfg.model.layers == 1 else HierarchicalVAE(cfg.model)
        return ObjectiveLearner(model, cfg.objective.build(total), cfg.optim,
                                compile_speedup=COMPILE_SPEEDUP, bf16_speedup=BF16_SPEEDUP)  # fmt: skip

    def build(self, cfg, run_dir, *, world, say) -> Built:
        data = self.data(cfg)
        cfg = derive(cfg, model={"data_shape": tuple(data.shape)})
        torch.manual_seed(cfg.train.seed)  # initialization
        learner = self.learner(cfg, data)
        _check_data(data, learner.model)
        m = cfg.model
        lines = [
            f"data: {data.name}, {len(data.train)} train / {len(data.test)} test images of shape "
            f"{data.shape}, binarize={cfg.data.binarize}",
            (
                f"model: {m.arch} VAE, {m.latent} latent of {m.latent_dim}"
                if m.layers == 1
                else f"model: hierarchical VAE, {m.layers} gaussian latent layers of "
                f"{learner.model.describe()} bottom to top, {m.inference} inference"
            )
            + f", {m.likelihood} likelihood, {sum(p.numel() for p in learner.model.parameters()):,} "
            "parameters",
        ]
        return Built(cfg, data, learner, lines)

    def after_training(self, cfg):
        k = cfg.evaluate.eval_k
        return VAEEvalOptions(k=k) if k else None

    def measure(self, run: Run, options: VAEEvalOptions) -> tuple[dict, list[str]]:
        check_device(options.device)
        precision, precision_why = resolve_precision(options.precision, options.device)
        data = run.data()
        learner, state = run.learner(data, options.device)
        model = learner.model
        raw = data.test[: options.limit or None]
        # a fixed binarization of the test set, so every evaluation scores the same images
        x = data.as_float(raw, torch.Generator().manual_seed(options.seed)).to(options.device)
        g = torch.Generator(options.device).manual_seed(options.seed + 1)
        t0 = time.perf_counter()
        ll = importance_log_likelihood(model, x, options.k, generator=g, precision=precision,
                                        progress=True)  # fmt: skip
        seconds = time.perf_counter() - t0
        torch.manual_seed(options.seed + 2)  # the one-sample ELBO's noise
        with torch.no_grad():
            model.eval()
            elbos = ELBO()(model, x).per_example["elbo"]
        elbo = elbos.mean().item()
        gaps = ll.value.double() - elbos.double().to(ll.value.device)
        gap_se = (gaps.std() / math.sqrt(len(gaps))).item() if len(gaps) > 1 else float("nan")
        g3 = torch.Generator(options.device).manual_seed(options.seed + 3)
        layers = {}
        if isinstance(model, HierarchicalVAE):
            torch.manual_seed(options.seed + 4)  # the draws of the per-layer KL
            diag, layers = diagnose_layers(model, x, generator=g3)
        else:
            diag = diagnose(model, x, generator=g3)
        dims = math.prod(data.shape)
        result = {
            "step": state["step"],
            "examples": len(x),
            "k": options.k,
            "log_likelihood": ll.mean,
            "log_likelihood_stderr": ll.mean_stderr,
            "elbo": elbo,
            "elbo_gap": ll.mean - elbo,
            "elbo_gap_stderr": gap_se,
            **({"bits_per_dim": ll.bits_per_dim(dims)} if model.likelihood.discrete else {}),
            "seconds": seconds,
            "precision": precision,
            **diag.as_dict(),
            **layers,
        }
        result["per_image"] = {"log_likelihood": [round(float(v), 4) for v in ll.value],
                               "elbo": [round(float(v), 4) for v in elbos]}  # fmt: skip
        ood_lines = []
        if options.ood:
            result["ood"], ood_lines = _ood(
                run, model, data, x, ll.value, elbos, options, precision
            )
        lines = [
            f"{run.dir} at step {state['step']}: {len(x)} test images, k = {options.k}",
            f"  log p(x) >= {ll.mean:.2f} +- {ll.mean_stderr:.2f} nats (importance sampled, "
            f"{seconds:.1f} s, precision {precision_why})",
            *([f"  {ll.bits_per_dim(dims):.3f} bits/dim"] if model.likelihood.discrete else []),
            f"  ELBO {elbo:.2f} nats (one z per image); gap log p(x) - ELBO = "
            f"{ll.mean - elbo:.2f} +- {gap_se:.2f} "
            "nats" + (" (negative: the one-sample ELBO's noise; the gap is >= 0 in expectation)"
                      if ll.mean < elbo else ""),
            f"  KL {diag.kl:.2f} nats; I(x; z) ~ {diag.mutual_information:.2f} +- "
            f"{diag.mutual_information_stderr:.2f} nats"
            + (f" ({note})" if (note := diag.mutual_information_note()) else "")
            + f"; active units {diag.active_units} of {len(diag.kl_per_unit)}",
            *([f"  per layer (bottom to top): KL {', '.join(f'{v:.2f}' for v in layers['kl_per_layer'])} "
               f"nats; active units {', '.join(f'{a}/{d}' for a, d in zip(layers['active_units_per_layer'], layers['layer_dims'], strict=True))}; "
               "I(x; z) is the top layer's"] if layers else []),
            *ood_lines,
        ]  # fmt: skip
        return result, lines

    def thoroughness(self, result):
        # an evaluation without --ood after one with it must not drop the OOD table
        # nor one with fewer LLR>j draws replace one with more (and its name says how many)
        ood = result.get("ood", {})
        return {"n": result["examples"], "k": result["k"], "ood": ood.get("out_examples", 0),
                "llr": ood.get("llr_samples", 0)}  # fmt: skip

    def draw(self, run, result, data, learner, state, out, options):
        from elbokit.report import curves, vae
        from elbokit.report.ood import ood_section

        model, cfg = learner.model, run.config
        x = data.as_float(data.test[:1000], torch.Generator().manual_seed(0))
        pngs = [
            (vae.samples(model, out / "samples.png"), "Samples from the prior, decoded (means of p(x|z))."),
            (vae.reconstructions(model, x, out / "reconstructions.png"), "Test images and their reconstructions from the posterior mean" + (
                " of the top layer, the layers below at their conditional prior means (what the top layer keeps)." if cfg.model.layers > 1 else ".")),
            (vae.traversals(model, x, out / "traversals.png"), "Latent traversals: one unit swept at a time, the others at a test image's posterior mean."),
            (vae.latent_map(model, x, data.test_labels, out / "latent_map.png"), "The 2-D latent space, decoded over a grid." if model.latent.z_size == 2
             else "Posterior means of test images on their first two principal axes, coloured by label."),
            (curves(run.dir / "metrics.jsonl", out / "curves.png", vae.VAE_CURVES), "Training curves (train: running means; test: per evaluation)."),
            (vae.kl_bars(torch.tensor(result["kl_per_unit"]), torch.tensor(result["unit_activity"]), out / "kl_per_unit.png",
                         criterion="E_x KL" if "kl_per_layer" in result else "Cov_x E[z|x]"),
             "KL per latent unit: units with no KL have collapsed to the prior."),
        ]  # fmt: skip
        m = cfg.model
        numbers = {
            "data": f"{cfg.data.source}: {len(data.train)} train / {len(data.test)} test images {tuple(data.shape)}",
            "model": (f"{m.arch} VAE, {m.latent} latent of {m.latent_dim}" if m.layers == 1 else
                      f"hierarchical VAE, latent layers {model.describe()} bottom to top, {m.inference} inference")
                     + f", {m.likelihood} likelihood",
            "trained": f"{state['step']} steps",
            "test ELBO": f"{result['elbo']:.2f} nats",
            f"test log p(x), importance sampled (k = {result['k']})": f"{result['log_likelihood']:.2f} +- {result['log_likelihood_stderr']:.2f} nats",
            "ELBO gap, log p(x) - ELBO": f"{result['elbo_gap']:.2f} +- {result.get('elbo_gap_stderr', float('nan')):.2f} nats",
            **({"bits per dimension": f"{result['bits_per_dim']:.3f}"} if "bits_per_dim" in result else {}),
            "KL(q(z|x) || p(z))": f"{result['kl']:.2f} nats",
            "mutual information I(x; z)": f"{result['mutual_information']:.2f} +- {result.get('mutual_information_stderr', float('nan')):.2f} nats (an estimate; the true value is at most log N = {math.log(result['examples']):.2f}, the estimate can exceed it when N is not well above exp(I))",
            "active units": f"{result['active_units']} of {len(result['kl_per_unit'])}",
        }  # fmt: skip
        if "ood" in result:
            png, lines = ood_section(result["ood"], out)
            pngs.append(png)
            numbers.update(lines)
        return f"elbokit report: {run.dir.name}", numbers, pngs


def _scores(model, x, options, precision, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(x) by importance sampling with options.k, the one-sample ELBO) per image."""
    g = torch.Generator(options.device).manual_seed(seed)
    ll = importance_log_likelihood(model, x, options.k, generator=g, precision=precision,
                                    progress=True).value  # fmt: skip
    torch.manual_seed(seed + 1)
    with torch.no_grad():
        model.eval()
        elbo = ELBO()(model, x).per_example["elbo"]
    return ll.double().cpu(), elbo.double().cpu()


@torch.no_grad()
def _llr(model, x, j: int, options, seed: int, batch: int = 100) -> torch.Tensor:
    """LLR^{>j} = L - L^{>j} per image, both bounds importance sampled with min(k, llr_samples) draws:
    L^{>j} draws the j lowest layers from the conditional prior (Havtorn et al.)."""
    g = torch.Generator(options.device).manual_seed(seed)
    k = min(options.k, options.llr_samples)
    model.eval()
    out = []
    for xb in x.split(batch):
        full = torch.logsumexp(model.log_weights(xb, k, g), 0)
        high = torch.logsumexp(model.log_weights(xb, k, g, prior_below=j), 0)
        out.append((full - high).double().cpu())
    return torch.cat(out)


def _ood(run, model, data, x_in, ll_in, elbo_in, options, precision) -> tuple[dict, list[str]]:
    """Scores of the test set against ``options.ood``'s images (its test split, then its
    training split, as many as the test set at most, binarized alike), the training set's mean log p(x) for typicality, and the metrics."""
    n = len(ll_in)
    g = torch.Generator().manual_seed(options.seed + 10)
    x_out = run.other_images(options.ood, n, model.data_shape, g).to(options.device)
    ll_out, elbo_out = _scores(model, x_out, options, precision, options.seed + 11)
    x_train = data.as_float(data.train[: min(n, 1000)], g).to(options.device)
    train_ll, _ = _scores(model, x_train, options, precision, options.seed + 12)
    mean_train = float(train_ll.mean())
    scores = {"elbo": (elbo_in.double().cpu(), elbo_out), "log_likelihood": (ll_in.double().cpu(), ll_out),
              "typicality": (typicality(ll_in.cpu(), mean_train), typicality(ll_out, mean_train))}  # fmt: skip
    if isinstance(model, HierarchicalVAE) and model.top_down:  # Havtorn et al.'s LLR>j
        for j in range(1, len(model.dims)):
            a = _llr(model, x_in, j, options, options.seed + 20 + j)
            b = _llr(model, x_out, j, options, options.seed + 40 + j)
            scores[f"llr>{j}"] = (-a, -b)  # a large ratio: the low layers explain the image
    if model.likelihood.discrete:  # bits/dim: log p(x) rescaled, the same ranking
        per = math.log(2) * math.prod(model.data_shape)
        scores["-bits_per_dim"] = (scores["log_likelihood"][0] / per, ll_out / per)
    out, lines = ood_table(scores, options.ood)
    out["train_mean_log_likelihood"] = mean_train
    if any(name.startswith("llr>") for name in scores):
        out["llr_samples"] = min(options.k, options.llr_samples)
        lines.append(f"  LLR>j: each bound importance sampled with {out['llr_samples']} draws "
                     "(--llr-samples)")  # fmt: skip
    return out, lines


def _check_data(data, model: VAE) -> None:
    """Fail before training when the data cannot be scored by the likelihood."""
    if model.likelihood.name == "discretized-logistic" and not data.eight_bit:
        raise ConfigError(
            f"the discretized-logistic likelihood needs 8-bit grey values: use --binarize none "
            f"with 8-bit data ({data.name} is {'binarized' if data.binarize != 'none' else 'not 8-bit'})"
        )
    for split in ("train", "test"):
        raw = data.split(split)
        for i in range(0, len(raw), 4096):
            model.likelihood.check_data(
                data.as_float(raw[i : i + 4096], torch.Generator().manual_seed(0)),
                f"{data.name} {split} images",
            )
