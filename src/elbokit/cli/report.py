"""``elbokit report RUN``: the figures and the one-page report of a trained run, in RUN/report/.

Uses RUN/eval.json when present (written by ``elbokit eval``), else evaluates first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from elbokit.cli._runs import read_run_config
from elbokit.cli.evaluate import EvalConfig, run_eval
from elbokit.cli.train import load_run, run_data
from elbokit.report import figures, write_html


@dataclass(frozen=True)
class ReportConfig:
    run: str = field(
        metadata={"positional": True, "help": "a run directory written by elbokit train"}
    )
    k: int = field(
        default=1000, metadata={"help": "importance samples, if the run must be evaluated first"}
    )


def run_report(cfg: ReportConfig) -> int:
    run = Path(cfg.run)
    if read_run_config(run).get("kind") == "world-model":
        from elbokit.cli.world_model import report_run

        report_run(run)
        return 0
    if not (run / "eval.json").exists():
        run_eval(EvalConfig(str(run), k=cfg.k))
    result = json.loads((run / "eval.json").read_text())
    model, train_cfg, state = load_run(run)
    model.eval()
    data = run_data(train_cfg)
    x = data.as_float(data.test[:1000], torch.Generator().manual_seed(0))
    out = run / "report"
    pngs = [
        (figures.samples(model, out / "samples.png"), "Samples from the prior, decoded (means of p(x|z))."),
        (figures.reconstructions(model, x, out / "reconstructions.png"), "Test images and their reconstructions from the posterior mean."),
        (figures.traversals(model, x, out / "traversals.png"), "Latent traversals: one unit swept at a time, the others at a test image's posterior mean."),
        (figures.latent_map(model, x, data.test_labels, out / "latent_map.png"), "The 2-D latent space, decoded over a grid." if model.latent.z_size == 2
         else "Posterior means of test images on their first two principal axes, coloured by label."),
        (figures.curves(run / "metrics.jsonl", out / "curves.png"), "Training curves (train: running means; test: per evaluation)."),
        (figures.kl_bars(torch.tensor(result["kl_per_unit"]), torch.tensor(result["unit_activity"]), out / "kl_per_unit.png"),
         "KL per latent unit: units with no KL have collapsed to the prior."),
    ]  # fmt: skip
    numbers = {
        "data": f"{train_cfg.data}: {len(data.train)} train / {len(data.test)} test images {tuple(data.shape)}",
        "model": f"{train_cfg.arch} VAE, {train_cfg.latent} latent of {train_cfg.latent_dim}, {train_cfg.likelihood} likelihood",
        "trained": f"{state['step']} steps",
        "test ELBO": f"{result['elbo']:.2f} nats",
        f"test log p(x), importance sampled (k = {result['k']})": f"{result['log_likelihood']:.2f} +- {result['log_likelihood_stderr']:.2f} nats",
        "ELBO gap, log p(x) - ELBO": f"{result['elbo_gap']:.2f} nats",
        **({"bits per dimension": f"{result['bits_per_dim']:.3f}"} if "bits_per_dim" in result else {}),
        "KL(q(z|x) || p(z))": f"{result['kl']:.2f} nats",
        "mutual information I(x; z)": f"{result['mutual_information']:.2f} nats (at most log N = {torch.tensor(float(result['examples'])).log().item():.2f})",
        "active units": f"{result['active_units']} of {len(result['kl_per_unit'])}",
    }  # fmt: skip
    config = read_run_config(run)
    page = write_html(out / "report.html", f"elbokit report: {run.name}", numbers, pngs, config)
    print(f"wrote {page} and {len(pngs)} figures in {out}")
    return 0
