"""Figures (PNG) and reports. Needs matplotlib: ``pip install 'elbokit[plot]'``."""

from elbokit.report.kl_figure import plot_gaussian_kl

__all__ = ["plot_gaussian_kl"]
