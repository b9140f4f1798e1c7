"""Two models compared over training seeds, paired per test image.

One run of each model can be luck: the difference between two runs mixes the models' difference
with the seeds' (initialization, data order, sampling). With runs of both models for seeds
1..S, each evaluated on the same test images (``per_image`` values in eval.json):

    d_s   = mean over images i of (a_{s,i} - b_{s,i})     the seed's paired difference
    mean  = mean over seeds of d_s
    SE    = sd over seeds of d_s / sqrt(S)                 what another set of seeds would move

The images are paired inside a seed (the same image scored by both models, its difficulty
cancels); the seeds are the replicates, so the SE is over seeds, not over images (the images'
SE within one seed, also given, leaves out the seeds' variation and is too small for a claim
about the models).
"""

from __future__ import annotations

import math
from pathlib import Path

from elbokit.files import read_json

__all__ = ["paired_difference", "per_image"]


def per_image(run, key: str) -> list[float]:
    """The per-image values ``key`` of a run's eval.json (a run folder or the parsed dict).

    Raises:
        ValueError: no eval.json, or one without per-image values of ``key``.
    """
    result = (
        run
        if isinstance(run, dict)
        else read_json(Path(run) / "eval.json", "evaluate the run first: elbokit eval RUN")
    )
    values = result.get("per_image", {}).get(key)
    if values is None:
        have = sorted(result.get("per_image", {}))
        raise ValueError(f"{run if not isinstance(run, dict) else 'the evaluation'} has no per-image "
                         f"{key!r} (it has {have or 'none'}): evaluate it again with this version")  # fmt: skip
    return [float(v) for v in values]


def paired_difference(
    a: list, b: list, key: str, key_b: str | None = None, scale_b: float = 1.0
) -> dict:
    """Model A minus model B over seeds: ``a`` and ``b`` are the runs of each (folders or
    eval.json dicts), in the same order of seeds; ``key`` the per-image value compared (``key_b``
    B's, if named otherwise, times ``scale_b``: a VAE's log p(x) against a diffusion bound's
    bits/dim). Returns mean, stderr (over seeds), per_seed, seeds, images, and the per-image
    stderr of each seed's difference.

    Raises:
        ValueError: fewer than 2 seeds, unequal numbers of runs, or runs that scored different
        numbers of test images.
    """
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"{len(a)} runs against {len(b)}: expected the same number of seeds, at "
                         "least 2, in the same order")  # fmt: skip
    per_seed, within = [], []
    images = None
    for ra, rb in zip(a, b, strict=True):
        va, vb = per_image(ra, key), [scale_b * v for v in per_image(rb, key_b or key)]
        if len(va) != len(vb) or (images is not None and len(va) != images):
            raise ValueError(f"the runs scored {len(va)} and {len(vb)} test images: pair runs "
                             "evaluated on the same images (the same --limit)")  # fmt: skip
        images = len(va)
        d = [x - y for x, y in zip(va, vb, strict=True)]
        m = sum(d) / len(d)
        per_seed.append(m)
        sd = math.sqrt(sum((v - m) ** 2 for v in d) / (len(d) - 1)) if len(d) > 1 else math.nan
        within.append(sd / math.sqrt(len(d)))
    s = len(per_seed)
    mean = sum(per_seed) / s
    sd = math.sqrt(sum((v - mean) ** 2 for v in per_seed) / (s - 1))
    return {"mean": mean, "stderr": sd / math.sqrt(s), "per_seed": per_seed, "seeds": s,
            "images": images, "per_image_stderr": within}  # fmt: skip
