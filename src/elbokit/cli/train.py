"""``elbokit train vae``: data, model and objective from one typed config, then the trainer.

    elbokit train vae                                   mnist5k, MLP 784-512-512-(32 Gaussian)
    elbokit train vae --preset debug                    seconds, for trying things and tests
    elbokit train vae --data digits --latent-dim 2 --beta 4 --epochs 50
    elbokit train vae --resume runs/vae-mnist5k-...     continue an interrupted run

The resolved config is saved as ``config.json`` in the run directory and is all that is needed
to rebuild the model (``load_run``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from elbokit.cli._args import config_of, saved_config
from elbokit.cli._runs import new_run_dir, read_run_config, write_run_config
from elbokit.data import load_data
from elbokit.models.vae import VAE, VAEConfig
from elbokit.objectives import ELBO, IWAE, KLSchedule
from elbokit.train.checkpoint import load_checkpoint
from elbokit.train.distributed import setup, teardown
from elbokit.train.trainer import TrainConfig, Trainer

KIND = "vae"


@dataclass(frozen=True)
class TrainVAEConfig:
    """Everything a VAE run is made of; the CLI's options, one per field."""

    # data
    data: str = field(
        default="mnist5k",
        metadata={
            "help": "mnist5k, digits, fashion-mnist, or a path (IDX folder, .npz, image folder)"
        },
    )
    binarize: Literal["dynamic", "static", "none"] = field(
        default="dynamic",
        metadata={"help": "Bernoulli-resample pixels per batch, once, or not at all"},
    )
    test_fraction: float = field(
        default=0.1, metadata={"help": "held out where the data has no split"}
    )
    limit: int = field(default=0, metadata={"help": "use only this many training images (0: all)"})
    # model
    latent: Literal["gaussian", "categorical"] = field(
        default="gaussian",
        metadata={
            "help": "latent family: gaussian, or categorical (straight-through, groups x classes)"
        },
    )
    latent_dim: int = field(
        default=32, metadata={"help": "latent dimensions (groups, for categorical)"}
    )
    latent_classes: int = field(
        default=32, metadata={"help": "classes per group of a categorical latent"}
    )
    likelihood: Literal["bernoulli", "gaussian", "gaussian-learned", "discretized-logistic"] = (
        field(default="bernoulli", metadata={"help": "p(x|z) family"})
    )
    arch: Literal["mlp", "conv"] = field(
        default="mlp", metadata={"help": "encoder/decoder architecture"}
    )
    hidden: tuple[int, ...] = field(
        default=(512, 512), metadata={"help": "MLP hidden widths (decoder mirrored)"}
    )
    channels: tuple[int, ...] = field(
        default=(32, 64), metadata={"help": "conv channels per stride-2 layer"}
    )
    # objective
    objective: Literal["elbo", "iwae"] = field(
        default="elbo", metadata={"help": "training objective"}
    )
    beta: float = field(default=1.0, metadata={"help": "weight of the KL term (beta-VAE)"})
    kl_schedule: Literal["constant", "linear", "cyclical"] = field(
        default="constant", metadata={"help": "KL weight over training"}
    )
    kl_warmup: int = field(default=1000, metadata={"help": "steps of linear KL warm-up"})
    kl_cycles: int = field(default=4, metadata={"help": "cycles of the cyclical schedule"})
    free_bits: float = field(default=0.0, metadata={"help": "free bits in nats (0: off)"})
    free_bits_mode: Literal["per_dim", "mean"] = field(
        default="per_dim", metadata={"help": "clamp each unit's KL, or the total"}
    )
    iwae_k: int = field(default=5, metadata={"help": "importance samples for --objective iwae"})
    # training
    epochs: int = field(default=30, metadata={"help": "passes over the training set"})
    batch_size: int = field(default=100, metadata={"help": "examples per step"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    seed: int = field(
        default=0, metadata={"help": "seeds initialization, split, order and sampling"}
    )
    checkpoint_every: int = field(default=500, metadata={"help": "steps between checkpoints"})
    threads: int = field(default=0, metadata={"help": "torch threads (0: leave as is)"})
    device: str = field(default="cpu", metadata={"help": "cpu or cuda"})
    precision: Literal["fp32", "bf16"] = field(
        default="fp32", metadata={"help": "bf16: autocast matmuls (AMX CPUs, GPUs)"}
    )
    progress: bool = field(default=True, metadata={"help": "progress bar"})
    eval_k: int = field(
        default=1000,
        metadata={
            "help": "then evaluate with this many importance samples and write the report (0: neither)"
        },
    )
    out: str = field(default="", metadata={"help": "run directory (default runs/vae-DATA-TIME)"})


PRESETS = {
    "default": TrainVAEConfig(),
    "debug": TrainVAEConfig(
        data="digits",
        latent_dim=4,
        hidden=(64,),
        channels=(8, 16),
        epochs=2,
        batch_size=50,
        checkpoint_every=20,
        eval_k=50,
    ),
}


def train_config(cfg: TrainVAEConfig) -> TrainConfig:
    return config_of(TrainConfig, cfg)


def build_objective(cfg: TrainVAEConfig, steps_per_epoch: int):
    if cfg.objective == "iwae":
        return IWAE(k=cfg.iwae_k)
    if cfg.kl_schedule == "linear":
        schedule = KLSchedule("linear", warmup=cfg.kl_warmup)
    elif cfg.kl_schedule == "cyclical":
        schedule = KLSchedule("cyclical", total=cfg.epochs * steps_per_epoch, cycles=cfg.kl_cycles)
    else:
        schedule = KLSchedule()
    return ELBO(
        beta=cfg.beta, schedule=schedule, free_bits=cfg.free_bits, free_bits_mode=cfg.free_bits_mode
    )


def model_config(cfg: TrainVAEConfig, data_shape) -> VAEConfig:
    return config_of(VAEConfig, cfg, data_shape=tuple(data_shape))


def _check_data(data, model: VAE) -> None:
    """Fail before training when the data cannot be scored by the likelihood."""
    if model.likelihood.name == "discretized-logistic" and not data.eight_bit:
        raise ValueError(
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


def run_config(saved: dict) -> TrainVAEConfig:
    """The TrainVAEConfig of a saved config (JSON lists back to tuples)."""
    return saved_config(TrainVAEConfig, saved["run"])


def run_data(cfg: TrainVAEConfig):
    """The run's data, split and binarized exactly as it was for training."""
    return load_data(
        cfg.data,
        binarize=cfg.binarize,
        test_fraction=cfg.test_fraction,
        seed=cfg.seed,
        limit=cfg.limit or None,
    )


def load_run(run_dir: str | Path) -> tuple[VAE, TrainVAEConfig, dict]:
    """Rebuild a run's model from its config.json and load its latest checkpoint."""
    saved = read_run_config(run_dir, KIND)
    model = VAE(VAEConfig.from_dict(saved["model"]))
    state = load_checkpoint(Path(run_dir), model)
    return model, run_config(saved), state


def run_train_vae(cfg: TrainVAEConfig, *, resume: str = "") -> int:
    if resume:
        run_dir = Path(resume)
        cfg = run_config(read_run_config(run_dir, KIND))
    else:
        run_dir = new_run_dir(cfg.out, f"runs/vae-{Path(cfg.data).name}")
    world = setup(cfg.device)  # under torchrun: rank 0 alone writes and prints
    say = print if world.main else (lambda *args: None)
    data = run_data(cfg)
    torch.manual_seed(cfg.seed)  # initialization
    mcfg = model_config(cfg, data.shape)
    model = VAE(mcfg)
    _check_data(data, model)
    objective = build_objective(cfg, data.num_batches("train", cfg.batch_size))
    if world.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            write_run_config(run_dir, KIND, cfg, mcfg)
    say(f"run directory: {run_dir}")
    say(
        f"data: {data.name}, {len(data.train)} train / {len(data.test)} test images of shape {data.shape}, binarize={cfg.binarize}"
    )
    say(
        f"model: {cfg.arch} VAE, {cfg.latent} latent of {cfg.latent_dim}, {cfg.likelihood} likelihood, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters"
        + (f"; {world.size} processes" if world.size > 1 else "")
    )
    trainer = Trainer(train_config(cfg), run_dir)
    t0 = time.perf_counter()
    try:
        metrics = trainer.fit(model, objective, data, resume=bool(resume))
    finally:
        teardown(world)
    seconds = time.perf_counter() - t0
    if model.likelihood.discrete and "test/elbo" in metrics:  # a probability of 8-bit values
        metrics["test/bits_per_dim"] = -metrics["test/elbo"] / (math.prod(data.shape) * math.log(2))
    shown = ", ".join(f"{k} {v:.3f}" if "bits" in k else f"{k} {v:.2f}" for k, v in metrics.items())
    say(f"done in {seconds:.1f} s: {shown or 'no new epochs'}")
    if cfg.eval_k and world.main:
        from elbokit.cli.evaluate import EvalConfig, run_eval
        from elbokit.cli.report import ReportConfig, run_report

        run_eval(EvalConfig(str(run_dir), k=cfg.eval_k))
        run_report(ReportConfig(str(run_dir)))
    return 0
