"""matplotlib, imported on demand with the Agg backend (no display needed)."""

from __future__ import annotations


def pyplot():
    """matplotlib.pyplot on the Agg backend, or an error that says how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "figures need matplotlib, which is not installed: pip install 'elbokit[plot]'"
        ) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt
