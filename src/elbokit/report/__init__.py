"""Figures (PNG) and the one-page HTML report. Needs matplotlib: ``pip install 'elbokit[plot]'``."""

from elbokit.report import figures
from elbokit.report.html import write_html
from elbokit.report.kl_figure import plot_gaussian_kl

__all__ = ["figures", "plot_gaussian_kl", "write_html"]
