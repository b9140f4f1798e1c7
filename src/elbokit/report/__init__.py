"""Figures (PNG) and the one-page HTML report, per kind of run, with one reader of metrics.jsonl.
Needs matplotlib: ``pip install 'elbokit[plot]'``.

    report.vae             samples, reconstructions, traversals, latent map, KL bars, rate-distortion
    report.world_model     imagination strip and GIF, open-loop errors, latent usage, KL balance
    report.linear_gaussian the identity log p(x) = ELBO + KL(q || p(z|x)) over training
    report.bayes           the conjugate models' posterior against q
    report.gmm             points by responsibility with ellipses, the ELBO per iteration, weights
    report.bnn             predictive bands, predictions, reliability, entropy in and out
    report.diffusion       samples, the chain, the bound by timestep
    report.skills          skill trajectories and their GIF, planning to goals
    report.agent           returns against steps and time, real against imagined, the policy GIF
    report.kl_figure       the Gaussian KL figure of ``elbokit kl plot``
    report.metrics         read_metrics and the training curves
    report.html            the one-page report
"""

from elbokit.report.html import write_html
from elbokit.report.kl_figure import plot_gaussian_kl
from elbokit.report.metrics import curves, read_metrics

__all__ = ["curves", "plot_gaussian_kl", "read_metrics", "write_html"]
