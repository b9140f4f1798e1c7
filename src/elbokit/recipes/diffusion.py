"""The ``diffusion`` kind: a DDPM on 8-bit images, judged by its whole variational bound.

    elbokit train diffusion                          mnist5k, small U-Net, T = 1000, hybrid loss
    elbokit train diffusion --preset debug           digits, a tiny U-Net, T = 50: seconds
    elbokit train diffusion --schedule cosine --loss hybrid --variance learned
    elbokit train diffusion --preset toy --data eight-gaussians   2-D points, an MLP denoiser
    elbokit eval RUN [--limit 0] [--mc 0]            the bound over every t (and a quick MC one)
    elbokit report RUN [--vae VAE_RUN]               samples, the chain, the bound by t

Its evaluation: the bound L = L_T + sum_t L_{t-1} + L_0 over every timestep of every test image
(batched over images and timesteps), in nats and bits/dim, with its decomposition by t, and an
unbiased Monte Carlo estimate over t with its standard error. With ``--vae RUN`` (a VAE trained
with ``--binarize none --likelihood discretized-logistic`` on the same data), the report sets
the VAE's importance-sampled bits/dim beside the bound, on the same test images.

The 2-D toys (moons, eight-gaussians, swiss-roll; ``elbokit.data.toys2d``) are continuous
points: L_0 is a Gaussian density there, so the bound is in nats per point (and may be
negative); for eight-gaussians, whose density is known, the report sets the exact negative
log-likelihood of the same test points beside it, which the bound exceeds on average.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import torch

from elbokit.config import ConfigError, Section, opt
from elbokit.data import ImageDataConfig
from elbokit.data.toys2d import TOYS_2D, load_toy, toy_log_prob
from elbokit.evaluate._progress import progress_bar
from elbokit.evaluate.ood import ood_table
from elbokit.files import read_json
from elbokit.models.diffusion import Diffusion, DiffusionConfig
from elbokit.objectives.base import ObjectiveOutput
from elbokit.recipes.base import Built, Recipe, Run, derive
from elbokit.recipes.loaded import Loaded, as_batch, as_images, as_pixels
from elbokit.train.learner import AdamConfig, ObjectiveLearner
from elbokit.train.loop import TrainConfig
from elbokit.train.settings import check_device, check_device_name

# compiled / eager training step speed, measured by benchmarks/diffusion_bench.py steps (AVX-512
# Zen 5 EPYC, 2 threads, 2026-12-07, 14.29 against 17.94 steps/s): Inductor's kernels beside the
# convolutions ran slower than eager's
COMPILE_SPEEDUP = {"cpu": 0.80}
# the bound's network calls: eager / compiled time with the U-Net's weights frozen into the graph
# (Inductor's freezing), the default preset's U-Net, 256 rows per call, measured by
# benchmarks/diffusion_bench.py bound (200 images, every 10th t, 3 alternating rounds; AVX-512
# Zen 5 EPYC, 2 threads, 2026-12-07): 0.86x and 1.04x in two runs. Its convolutions, which
# compiling leaves to oneDNN, are ~64% of the eager time, so no fusion of the rest gets far;
# --compile auto leaves it eager (under COMPILE_AUTO_SPEEDUP), on compiles it.
EVAL_COMPILE_SPEEDUP = {"cpu": 0.95}
# --compile auto would compile a bound of at least this many (image, t) pairs of a kind measured
# faster compiled: a cold compile took 9-36 s
EVAL_COMPILE_PAIRS = 500_000


class DiffusionObjective:
    """The model's training loss on a batch of images in [0, 1] (mapped to [-1, 1]) or, with
    ``images=False``, of points taken as they are; terms: ``mse`` (epsilon, per element),
    ``vlb_t`` (L_{t-1} at the sampled t, nats) and ``bound`` (a one-sample unbiased estimate of
    the whole bound, bits/dim; nats per point for points: ``Diffusion.loss`` says how it is
    drawn in training and in evaluation)."""

    def __init__(self, images: bool = True):
        self.images = images

    def __call__(self, model: Diffusion, x: torch.Tensor, step: int = 0) -> ObjectiveOutput:
        loss, terms = model.loss(2 * x - 1 if self.images else x.float())
        return ObjectiveOutput(loss, terms)


def is_toy(cfg) -> bool:
    return cfg.data.source in TOYS_2D


@dataclass(frozen=True)
class DiffusionAfterTraining(Section):
    limit: int = opt(100, "then compute the bound over every t for this many test images and "
                     "write the report (0: all; -1: neither)", ge=-1, flag="eval-images")  # fmt: skip


def _images() -> ImageDataConfig:
    return ImageDataConfig(binarize="none")


def _train() -> TrainConfig:
    return TrainConfig(
        epochs=70, batch_size=64, log_every=20, checkpoint_every=500, eval_every=5, grad_clip=1.0
    )


@dataclass(frozen=True)
class DiffusionRunConfig(Section):
    data: ImageDataConfig = opt(
        default_factory=_images,
        help="the images (8-bit: binarize none), or 2-D points: moons, eight-gaussians, "
        "swiss-roll (with --preset toy)",
    )
    model: DiffusionConfig = opt(
        default_factory=DiffusionConfig, help="the diffusion and its denoiser"
    )
    optim: AdamConfig = opt(default_factory=lambda: AdamConfig(lr=1e-3), help="the optimizer")
    train: TrainConfig = opt(default_factory=_train, help="the training loop")
    evaluate: DiffusionAfterTraining = opt(
        default_factory=DiffusionAfterTraining, help="after training"
    )


@dataclass(frozen=True)
class DiffusionEvalOptions(Section):
    limit: int = opt(100, "test images scored (0: all); the first ones, the same every time", ge=0)
    exact: bool = opt(True, "the bound over every t of every image (else only the MC estimate)")
    mc: int = opt(
        0, "also a Monte Carlo estimate over this many uniform t per image (0: none)", ge=0
    )
    batch: int = opt(
        256, "(image, t) pairs per network call (a few hundred run fastest on a CPU)", ge=1
    )
    seed: int = opt(0, "seed of the noise x_t ~ q(x_t | x_0)", ge=0)
    vae: str = opt("", "a VAE run on the same data (discretized likelihood), set beside it")
    clip_x0: str = opt(
        "as-trained",
        "clip the predicted x_0 to [-1, 1] in the bound and in the report's samples alike: as "
        "the run was configured, on or off (images only; eval.json records which)",
        choices=("as-trained", "on", "off"),
    )
    samples: int = opt(64, "report: samples drawn (all T steps each; 2-D points: >= 2,000)", ge=1)
    device: str = opt("cpu", "cpu, cuda, cuda:1, ...")
    compile: str = opt(
        "auto", "compile the U-Net for the bound (torch.compile, weights frozen into the graph; "
        "per-image values within ~1e-6 bits/dim of eager's): on, off, or auto (where measured "
        f"faster, for bounds of >= {EVAL_COMPILE_PAIRS:,} image-timestep pairs; on a CPU it "
        "measured 0.86-1.04x eager's speed, so auto stays eager there)",
        choices=("auto", "on", "off"),
    )  # fmt: skip
    ood: str = opt(
        "", "also score as many images of this data (any the kind reads, e.g. mnist5k for a "
        "Fashion-MNIST run) as out of distribution: the whole bound and its parts over ranges "
        "of t, AUROC, AUPRC and FPR at 80% TPR of each, with histograms",
    )  # fmt: skip

    def validate(self):
        check_device_name(self.device)
        if not self.exact and not self.mc:
            raise ConfigError("nothing to compute: --no-exact needs --mc N (N >= 2)")
        if self.ood and not self.exact:
            raise ConfigError("--ood scores the bound over every t: it needs --exact")
        if self.mc == 1:
            raise ConfigError("mc = 1 has no standard error; use --mc 2 or more")


class LoadedDiffusion(Loaded):
    """A trained DDPM (``elbokit.load``): ``sample(n)`` and ``bound(x)``, the whole variational
    bound of each example term by term. Images are given as 8-bit pixels (uint8) or floats in
    [0, 1] and sampled in [0, 1]; 2-D points as they are."""

    @property
    def model(self) -> Diffusion:
        return self.learner.model

    @property
    def toy(self) -> bool:
        return is_toy(self.config)

    def prepare(self, x, what: str = "x") -> torch.Tensor:
        """x in the model's units: images scaled to [-1, 1], points as they are."""
        shape = tuple(self.config.model.data_shape)
        if not self.toy:
            return 2 * as_images(as_pixels(x, what, self.device), shape, what) - 1
        x = as_batch(x, what, device=self.device)
        if tuple(x.shape[1:]) != shape:
            raise ValueError(f"{what} has shape {tuple(x.shape)}; this model takes "
                             f"(B, {', '.join(map(str, shape))})")  # fmt: skip
        return x.float()

    @torch.no_grad()
    def sample(self, n: int, *, seed: int = 0) -> torch.Tensor:
        """n ancestral samples through all T steps: images (n, C, H, W) in [0, 1] (not yet
        quantized to 8 bits), or points (n, 2)."""
        if n < 1:
            raise ValueError(f"n = {n}; expected at least one sample")
        g = torch.Generator(self.device).manual_seed(seed)
        x = self.model.sample(n, generator=g, device=self.device)
        return x if self.toy else ((x + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def bound(
        self, x, *, seed: int = 0, batch: int = 256, compile: bool = False
    ) -> dict[str, torch.Tensor]:
        """The variational bound on -log p(x) of each example, every term (one x_t ~ q(x_t |
        x_0) per example and t, drawn from ``seed``): ``L_T`` (B,), ``L_t`` (B, T) = L_{t-1}
        for t = 1..T (L_0, the decoder's term, first), ``total`` (B,) nats, and for images
        ``bits_per_dim`` (B,). ``compile``: the network compiled once for this model (as ``elbokit
        eval --compile on``: 0.86-1.04x eager's speed on a CPU for the default U-Net, 9-36 s to
        compile), kept for later calls."""
        x = self.prepare(x)
        g = torch.Generator(self.device).manual_seed(seed)
        vlb = None
        if compile:
            if getattr(self, "_compiled_vlb", None) is None or self._compiled_vlb.rows != batch:
                self._compiled_vlb = compiled_vlb(self.model, batch)
            vlb = self._compiled_vlb
        prior, per_t = self.model.bound(x, batch=batch, generator=g, vlb=vlb)
        total = prior.double() + per_t.double().sum(1)
        out = {"L_T": prior, "L_t": per_t, "total": total}
        if not self.toy:
            out["bits_per_dim"] = total / (self.model.dims * math.log(2))
        return out

    def log_prob(self, x, *args, **kwargs):
        """A DDPM has no tractable log p(x): ``bound(x)["total"]`` bounds -log p(x) from above."""
        raise NotImplementedError(
            "a diffusion model has no tractable log p(x); bound(x)['total'] is an upper bound on "
            "-log p(x) (the ELBO's negative), term by term"
        )


def compiled_vlb(model: Diffusion, rows: int, say=print):
    """``vlb(x0, t, eps)`` for ``Diffusion.bound``: the rows' L_(t-1) compiled for inference in
    chunks of ``rows`` (``elbokit.train.compiled.CompiledInference``; the weights as they are)."""
    from elbokit.train.compiled import CompiledInference

    def vlb(x0, t, eps):
        return model.terms(x0, t, eps)["vlb"]

    return CompiledInference(vlb, "the bound's network", rows, say=say)


def _bound(model: Diffusion, x, options, generator, vlb, what: str):
    """The bound of images ``x`` with a progress bar on a terminal."""
    bar = progress_bar(len(x), what, "image")
    try:
        return model.bound(x, batch=options.batch, generator=generator, vlb=vlb, progress=bar)
    finally:
        bar.close()


def _compiled_bound(model: Diffusion, options: DiffusionEvalOptions, pairs: int, say):
    """(L_(t-1) of a batch of rows compiled, or None for eager; a line saying which and why) for
    --compile and a bound of ``pairs`` (image, t) pairs."""
    from elbokit.train.settings import COMPILE_AUTO_SPEEDUP, compile_cache, compiler_problem

    asked, device = options.compile, torch.device(options.device).type
    if asked == "off":
        return None, "off"
    if asked == "auto":
        ratio = EVAL_COMPILE_SPEEDUP.get(device) if model.cfg.net == "unet" else None
        if ratio is None:
            return None, f"off (auto: the compiled {model.cfg.net} is not measured on {device})"
        if ratio < COMPILE_AUTO_SPEEDUP:
            return None, (f"off (auto: the compiled bound measured {ratio}x eager's speed on "
                          f"{device}, under the {COMPILE_AUTO_SPEEDUP}x auto asks for; --compile on "
                          "compiles it)")  # fmt: skip
        if pairs < EVAL_COMPILE_PAIRS:
            return None, (f"off (auto: {pairs:,} image-timestep pairs, under the "
                          f"{EVAL_COMPILE_PAIRS:,} that pay back a compile)")  # fmt: skip
    problem = compiler_problem(options.device)
    if problem is not None:
        return None, f"off ({asked} asked, but {problem})"
    fn = compiled_vlb(model, options.batch, say=say)
    why = (
        f"{pairs:,} pairs, measured {EVAL_COMPILE_SPEEDUP[device]}x on {device}; "
        if asked == "auto"
        else ""
    )
    return fn, f"on ({why}kernels cached in {compile_cache()})"


class DiffusionRecipe(Recipe):
    headline = "test/bound:min"  # what a study optimizes by default
    name = "diffusion"
    help = "a DDPM on 8-bit images, judged by its whole variational bound in bits/dim"
    config = DiffusionRunConfig
    loaded = LoadedDiffusion
    eval_options = DiffusionEvalOptions
    preset_notes: ClassVar[dict[str, str]] = {
        "default": "mnist5k 8-bit, U-Net 16-32-32 channels, T = 1000, cosine schedule with s = 0.001 (less noise at t = 1 than 0.008: L_0 120 nats per image, not 432), learned variances, hybrid loss (Nichol and Dhariwal), x_0 clipped at t >= 2 (the cosine schedule's last step, beta_T = 0.999, otherwise costs ~300 nats per image), 70 epochs: ~30 min on 2 cores",
        "debug": "digits 8x8, a tiny U-Net, T = 50, 2 epochs: seconds",
        "toy": "2-D points (--data moons, eight-gaussians or swiss-roll), an MLP denoiser (128 wide, 3 blocks), T = 1000, linear schedule (no beta_T = 0.999 step: points are not clipped), a Gaussian L_0, 300 epochs: ~1 min on 2 cores",
    }
    presets: ClassVar[dict[str, dict]] = {
        "default": {
            "model": {
                "channels": 16,
                "mults": (1, 2, 2),
                "schedule": "cosine",
                "cosine_s": 0.001,
                "variance": "learned",
                "loss": "hybrid",
                "clip_x0": True,
            },
        },
        "debug": {
            "data": {"source": "digits"},
            "model": {"channels": 8, "mults": (1, 2), "steps": 50},
            "train": {"epochs": 2, "batch_size": 50, "checkpoint_every": 20, "eval_every": 1},
            "evaluate": {"limit": 20},
        },
        "toy": {
            "data": {"source": "moons"},
            "model": {
                "net": "mlp",
                "channels": 128,
                "blocks": 3,
                "discrete": False,
                "schedule": "linear",
                "variance": "learned",
                "loss": "hybrid",
            },
            "train": {"epochs": 300, "batch_size": 256, "eval_every": 50},
            "evaluate": {"limit": 1000},
        },
    }

    def units(self, cfg):
        # the evaluation's one-sample estimate of the bound: per point for a density, else 8-bit
        return {"test/bound": "nats/point" if is_toy(cfg) else "bits/dim", "test/vlb_t": "nats"}

    def default_out(self, cfg):
        return f"runs/diffusion-{Path(cfg.data.source).name}"

    def data(self, cfg, run_dir=None):
        if is_toy(cfg):
            return load_toy(cfg.data.source, seed=cfg.train.seed, limit=cfg.data.limit or None)
        return cfg.data.load(cfg.train.seed)

    def learner(self, cfg, data) -> ObjectiveLearner:
        model = Diffusion(cfg.model)
        return ObjectiveLearner(model, DiffusionObjective(images=not is_toy(cfg)), cfg.optim,
                                compile_speedup=COMPILE_SPEEDUP)  # fmt: skip

    def build(self, cfg, run_dir, *, world, say) -> Built:
        m = cfg.model
        if is_toy(cfg) and (m.net != "mlp" or m.discrete):
            raise ConfigError(
                f"{cfg.data.source} is 2-D points: it needs the MLP denoiser and a density for "
                f"L_0 (model.net = mlp, model.discrete = false), not net = {m.net}, discrete = "
                f"{str(m.discrete).lower()}: add --preset toy"
            )
        if not is_toy(cfg) and not m.discrete:
            raise ConfigError(
                "model.discrete = false scores 8-bit images by a density, whose bits/dim can be "
                "negative and mean nothing: keep discrete = true for images"
            )
        data = self.data(cfg)
        if is_toy(cfg):
            shape, kind, decoder = (data.dim,), "2-D points", "; L_0 a Gaussian density (nats)"
        elif not data.eight_bit:
            raise ConfigError(
                f"a diffusion's bound here is for 8-bit images: {data.name} is "
                f"{'binarized (use --binarize none)' if data.binarize != 'none' else 'not 8-bit'}"
            )
        else:
            shape, kind, decoder = tuple(data.shape), f"8-bit images of shape {data.shape}", ""
        cfg = derive(cfg, model={"data_shape": shape})
        torch.manual_seed(cfg.train.seed)
        learner = self.learner(cfg, data)
        m = cfg.model
        n = sum(p.numel() for p in learner.model.parameters())
        lines = [
            f"data: {data.name}, {len(data.train)} train / {len(data.test)} test {kind}",
            f"model: DDPM, T = {m.steps} ({m.schedule} schedule), variance {m.variance}, loss "
            f"{m.loss}, {m.net} denoiser with {n:,} parameters{decoder}",
        ]
        return Built(cfg, data, learner, lines)

    def after_training(self, cfg):
        limit = cfg.evaluate.limit
        return None if limit < 0 else DiffusionEvalOptions(limit=limit)

    def measure(self, run: Run, options: DiffusionEvalOptions) -> tuple[dict, list[str]]:
        check_device(options.device)
        data = run.data()
        learner, state = run.learner(data, options.device)
        model: Diffusion = learner.model
        toy = is_toy(run.config)
        if options.clip_x0 != "as-trained":
            if toy:
                raise ConfigError(f"--clip-x0 clips to [-1, 1], the range of images; "
                                  f"{run.config.data.source} is 2-D points")  # fmt: skip
            model.cfg = replace(model.cfg, clip_x0=options.clip_x0 == "on")
        if options.ood and toy:
            raise ConfigError(f"--ood scores images; {run.config.data.source} is 2-D points")
        if options.vae and toy:
            raise ConfigError(f"--vae sets a VAE's bits/dim beside images; {run.config.data.source} "
                              "is 2-D points")  # fmt: skip
        test = data.test[: options.limit or None]
        x = (test.float() if toy else 2 * data.as_float(test) - 1).to(options.device)
        dims = model.dims
        # images: bits per dimension of 8-bit data; points: nats per point (a density's bound)
        key, scale, unit = ("nats_per_point", 1.0, "nats/point") if toy else (
            "bits_per_dim", dims * math.log(2), "bits/dim")  # fmt: skip
        result = {"step": state["step"], "examples": len(x), "steps": model.steps,
                  "dims": dims, "clip_x0": model.cfg.clip_x0, "headline": key, "unit": unit}  # fmt: skip
        item = "point" if toy else "image"
        lines = [f"{run.dir} at step {state['step']}: {len(x)} test {item}s, T = {model.steps}"]
        vlb = None
        if options.exact:
            pairs = (len(x) + (len(x) if options.ood else 0)) * model.steps
            vlb, how = _compiled_bound(model, options, pairs, say=lines.append)
            result["compile"] = "off" if vlb is None else "on"
            result["compile_why"] = f"{options.compile}: {how}"
            lines.append(f"  compile: {how}")
            g = torch.Generator(options.device).manual_seed(options.seed)
            t0 = time.perf_counter()
            prior, per_t = _bound(model, x, options, g, vlb, "bound over every t")
            seconds = time.perf_counter() - t0
            total = prior.double() + per_t.double().sum(1)
            se = total.std() / math.sqrt(len(total)) if len(total) > 1 else torch.tensor(math.nan)
            curve = per_t.double().mean(0)
            result.update({
                "bound_nats": total.mean().item(),
                "bound_nats_stderr": se.item(),
                key: total.mean().item() / scale,
                f"{key}_stderr": se.item() / scale,
                "L_T": prior.double().mean().item(),
                "L_0": curve[0].item(),
                "L_middle": curve[1:].sum().item(),
                "L_t_curve": curve.tolist(),
                "seconds": seconds,
            })  # fmt: skip
            lines += [
                f"  the bound over every t: {total.mean():.2f} +- {se:.2f} nats"
                + ("" if toy else f" = {result[key]:.4f} +- {result[key + '_stderr']:.4f} bits/dim")
                + f" ({seconds:.1f} s; one x_t per {item} and t)",
                f"  L_T {result['L_T']:.4g} nats, sum of L_(t-1) over t = 2..T "
                f"{result['L_middle']:.2f} nats, L_0 {result['L_0']:.2f} nats"
                + (" (x_0 predictions clipped to [-1, 1] at t >= 2, as the model samples)" if model.cfg.clip_x0 else ""),
            ]  # fmt: skip
            log_p = toy_log_prob(run.config.data.source, x.cpu()) if toy else None
            if log_p is not None:  # the exact NLL of the same points, and the bound's excess
                nll, gap = -log_p, total.cpu() - (-log_p)
                n = math.sqrt(len(x))
                result.update({"true_nll_nats": nll.mean().item(),
                               "true_nll_nats_stderr": (nll.std() / n).item(),
                               "gap_nats": gap.mean().item(), "gap_nats_stderr": (gap.std() / n).item()})  # fmt: skip
                lines.append(
                    f"  the exact -log p(x) of the same points: {result['true_nll_nats']:.4f} nats; "
                    f"the bound exceeds it by {result['gap_nats']:.4f} +- "
                    f"{result['gap_nats_stderr']:.4f} nats (>= 0 on average)"
                )
            if not toy:  # every image's bound, so runs on the same images can be paired
                result["per_image"] = {"bits_per_dim": [round(float(v), 5) for v in total / scale]}
        if options.ood:
            g = torch.Generator(options.device).manual_seed(options.seed + 10)
            other = run.other_images(
                options.ood, len(x), data.shape, torch.Generator().manual_seed(0)
            )
            prior_o, per_t_o = _bound(model, 2 * other.to(options.device) - 1, options, g, vlb,
                                      f"bound, {options.ood}")  # fmt: skip
            result["ood"], more = ood_table(
                timestep_scores(prior, per_t, prior_o, per_t_o, scale), options.ood
            )
            lines += more
        if options.mc:
            g = torch.Generator(options.device).manual_seed(options.seed + 1)
            est, _ = model.bound_estimate(x, options.mc, generator=g)
            se = (est.double().var() / len(est)).sqrt()  # over images (each its own t draws)
            result.update({f"mc_{key}": est.double().mean().item() / scale,
                           f"mc_{key}_stderr": se.item() / scale, "mc_samples": options.mc})  # fmt: skip
            lines.append(f"  Monte Carlo over t ({options.mc} per {item}): "
                         f"{result['mc_' + key]:.4f} +- {result['mc_' + key + '_stderr']:.4f} {unit}")  # fmt: skip
        if options.vae:
            result["vae"] = _vae_beside(options.vae, run, len(x))
            v = result["vae"]
            lines.append(f"  the VAE {v['run']}: {v['bits_per_dim']:.4f} bits/dim by importance "
                         f"sampling (k = {v['k']}) on its first {v['examples']} test images")  # fmt: skip
        return result, lines

    def thoroughness(self, result):
        return {"n": result["examples"], "exact": int("L_t_curve" in result),
                "ood": result.get("ood", {}).get("out_examples", 0)}  # fmt: skip

    def draw(self, run, result, data, learner, state, out, options):
        from elbokit.report import curves, diffusion
        from elbokit.report.ood import ood_section

        model, cfg = learner.model, run.config
        # sample from the model the bound was computed for (clipped x_0 or not)
        model.cfg = replace(model.cfg, clip_x0=bool(result.get("clip_x0", model.cfg.clip_x0)))
        if options.vae and "vae" not in result:  # set beside an evaluation made without it
            result = {**result, "vae": _vae_beside(options.vae, run, result["examples"])}
        g = torch.Generator().manual_seed(0)
        toy = is_toy(cfg)
        n = max(options.samples, 2000) if toy else options.samples
        # points: the chain at t = T, T/2, T/4, ... (the shape forms late, at small t)
        times = (
            sorted({max(2, model.steps // 2**i) for i in range(7)}, reverse=True) if toy else None
        )
        x, chain = model.sample(n, generator=g, keep=10, times=times)
        if toy:
            pngs = [
                (diffusion.points(data.test, x, out / "samples.png"), f"{n} samples beside {len(data.test)} test points, every one of the T = {model.steps} steps."),
                (diffusion.point_chain(chain, times, out / "chain.png"), f"The denoising chain of the {n} samples, from x_T ~ N(0, I) (left) to x_0 (right)."),
            ]  # fmt: skip
        else:
            pngs = [
                (diffusion.samples((x + 1) / 2, out / "samples.png"), f"{n} samples, every one of the T = {model.steps} steps."),
                (diffusion.chain((chain[:, :8] + 1) / 2, out / "chain.png"), "The denoising chain, from x_T ~ N(0, I) (left) to x_0 (right), for 8 samples."),
            ]  # fmt: skip
        pngs.append((curves(run.dir / "metrics.jsonl", out / "curves.png", diffusion.CURVES),
                     "Training curves: the epsilon MSE and a one-sample estimate of the bound."))  # fmt: skip
        if "L_t_curve" in result:
            pngs.append((diffusion.decomposition(result, out / "bound_by_t.png"),
                         f"The bound by timestep: L_(t-1) averaged over the test {'points' if toy else 'images'}, with L_T and L_0."))  # fmt: skip
        m = cfg.model
        kind = "2-D points" if toy else f"8-bit images {tuple(data.shape)}"
        numbers = {
            "data": f"{cfg.data.source}: {len(data.train)} train / {len(data.test)} test {kind}",
            "model": f"DDPM, T = {m.steps}, {m.schedule} schedule, variance {m.variance}, loss {m.loss}",
            "trained": f"{state['step']} steps",
        }  # fmt: skip
        key, unit = result.get("headline", "bits_per_dim"), result.get("unit", "bits/dim")
        if key in result:
            numbers[f"the bound over every t ({result['examples']} test {'points' if toy else 'images'})"] = (
                f"{result[key]:.4f} +- {result[key + '_stderr']:.4f} {unit}"
                + ("" if toy else f" ({result['bound_nats']:.1f} nats)"))  # fmt: skip
            numbers["L_T / sum of L_(t-1) / L_0"] = (
                f"{result['L_T']:.3g} / {result['L_middle']:.4g} / {result['L_0']:.4g} nats")  # fmt: skip
        if "true_nll_nats" in result:
            numbers["the exact -log p(x) of the same points"] = (
                f"{result['true_nll_nats']:.4f} nats; the bound's excess {result['gap_nats']:.4f} "
                f"+- {result['gap_nats_stderr']:.4f} nats")  # fmt: skip
        if f"mc_{key}" in result:
            numbers["Monte Carlo over t"] = (
                f"{result['mc_' + key]:.4f} +- {result['mc_' + key + '_stderr']:.4f} {unit}"
            )
        if "vae" in result:
            v = result["vae"]
            numbers[f"the VAE ({v['run']}), importance sampled, k = {v['k']}"] = (
                f"{v['bits_per_dim']:.4f} bits/dim ({v['examples']} test images)"
            )
        if "ood" in result:
            png, lines = ood_section(result["ood"], out)
            pngs.append(png)
            numbers.update(lines)
        numbers["x_0 predictions"] = (
            "clipped to [-1, 1] at t >= 2 (in the bound and in sampling)"
            if model.cfg.clip_x0
            else "not clipped (in the bound or in sampling)"
        )
        return f"elbokit report: {run.dir.name}", numbers, pngs


def _vae_beside(path: str, run: Run, n: int) -> dict:
    """The bits/dim of a VAE run on the same data and test split, from its evaluation of the
    same number of test images (eval.json, or eval-nN-*.json written beside it)."""
    from elbokit.recipes.run import open_run

    vae = open_run(path)
    if vae.recipe.name != "vae":
        raise ConfigError(f"--vae {path}: a {vae.recipe.name} run, not a vae run")
    mine, theirs = run.config, vae.config
    if (theirs.data.source, theirs.data.test_fraction, theirs.train.seed) != (
        mine.data.source,
        mine.data.test_fraction,
        mine.train.seed,
    ):
        raise ConfigError(
            f"--vae {path}: trained on {theirs.data.source} (test fraction "
            f"{theirs.data.test_fraction}, seed {theirs.train.seed}), not on this run's "
            f"{mine.data.source} ({mine.data.test_fraction}, {mine.train.seed}): not the same test images"
        )
    found = [vae.dir / "eval.json", *sorted(vae.dir.glob(f"eval-n{n}-*.json"))]
    results = [read_json(p, "the VAE's evaluation") for p in found if p.exists()]
    if not results:
        raise ConfigError(
            f"--vae {path}: no evaluation; run `elbokit eval {path} --limit {n}` first"
        )
    if not any("bits_per_dim" in r for r in results):
        raise ConfigError(
            f"--vae {path}: no bits/dim (binarized or continuous likelihood); train it with "
            "--binarize none --likelihood discretized-logistic"
        )
    same = [r for r in results if r.get("examples") == n and "bits_per_dim" in r]
    if not same:
        raise ConfigError(
            f"--vae {path}: scored on {sorted({r.get('examples') for r in results})} test images, "
            f"this run on {n}: run `elbokit eval {path} --limit {n}` (the first {n}, as here)"
        )
    r = max(same, key=lambda r: r["k"])
    return {
        "run": str(vae.dir),
        "bits_per_dim": r["bits_per_dim"],
        "k": r["k"],
        "examples": r["examples"],
    }


def timestep_ranges(steps: int) -> list[tuple[int, int]]:
    """The bound's t split by decades: [1, 1], [2, 10], [11, 100], [101, 1000], ... up to T."""
    out, lo = [(1, 1)], 2
    while lo <= steps:
        hi = min(steps, 10 ** len(out))
        out.append((lo, hi))
        lo = hi + 1
    return out


def timestep_scores(prior, per_t, prior_o, per_t_o, scale: float) -> dict:
    """Out-of-distribution scores of a diffusion model, higher for more typical images: minus
    the whole bound (bits/dim) and minus its part over each range of t (nats), for the test
    images and the other data. A diffusion bound is a sum over t, so the question Havtorn et
    al. asked of a hierarchy's layers is asked of its timesteps: the small t see pixel noise,
    the large t the image's shape."""

    def whole(p, q):
        return -(p.double() + q.double().sum(1)).cpu() / scale

    scores = {"-bits_per_dim": (whole(prior, per_t), whole(prior_o, per_t_o))}
    for lo, hi in timestep_ranges(per_t.shape[1]):
        name = f"t {lo}" if lo == hi else f"t {lo}-{hi}"
        scores[name] = tuple(-q[:, lo - 1 : hi].double().sum(1).cpu() for q in (per_t, per_t_o))
    return scores
