"""Paired comparisons over seeds: the interval mean +- t SE covers the true difference as often
as it says, where the seeds' variation is larger than the images' (a seeded simulation), and
pairing by image cancels the images' difficulty."""

import numpy as np
import pytest
from scipy import stats

from elbokit.evaluate.paired import paired_difference


def _runs(rng, seeds, images, effect, seed_sd, image_sd):
    difficulty = rng.normal(0, 30.0, images)  # shared by both models: pairing removes it
    a, b = [], []
    for _ in range(seeds):
        base = difficulty + rng.normal(0, 0.1, images)
        b.append({"per_image": {"ll": list(base + rng.normal(0, seed_sd))}})
        a.append({"per_image": {"ll": list(base + effect + rng.normal(0, seed_sd)
                                            + rng.normal(0, image_sd, images))}})  # fmt: skip
    return a, b


def test_the_interval_over_seeds_covers_the_truth_at_its_level():
    rng = np.random.default_rng(0)
    reps, seeds, covered, covered_images = 400, 3, 0, 0
    q = stats.t.ppf(0.975, seeds - 1)
    for _ in range(reps):
        a, b = _runs(rng, seeds, 200, effect=0.5, seed_sd=0.3, image_sd=0.5)
        d = paired_difference(a, b, "ll")
        covered += abs(d["mean"] - 0.5) < q * d["stderr"]
        # the images' SE of one seed leaves the seeds' variation out: it covers far less often
        covered_images += abs(d["per_seed"][0] - 0.5) < 1.96 * d["per_image_stderr"][0]
    assert abs(covered / reps - 0.95) < 3 * np.sqrt(0.95 * 0.05 / reps)
    assert covered_images / reps < 0.5
    assert d["seeds"] == 3 and d["images"] == 200


def test_pairing_removes_the_images_difficulty_and_bad_pairs_are_refused():
    rng = np.random.default_rng(1)
    a, b = _runs(rng, 4, 500, effect=-1.0, seed_sd=0.05, image_sd=0.0)
    d = paired_difference(a, b, "ll")
    # unpaired, the difficulty (sd 30 over 500 images) would give an SE near 1.3 per seed
    assert d["mean"] == pytest.approx(-1.0, abs=0.15) and d["stderr"] < 0.1
    # another key and a scale: B's values in other units
    scaled = [{"per_image": {"bpd": [v / 2 for v in r["per_image"]["ll"]]}} for r in b]
    assert paired_difference(a, scaled, "ll", "bpd", scale_b=2.0)["mean"] == pytest.approx(
        d["mean"]
    )
    with pytest.raises(ValueError, match="at least 2"):
        paired_difference(a[:1], b[:1], "ll")
    with pytest.raises(ValueError, match="scored 500 and 499 test images"):
        paired_difference(a, [{"per_image": {"ll": r["per_image"]["ll"][:-1]}} for r in b], "ll")
    with pytest.raises(ValueError, match="no per-image 'elbo'"):
        paired_difference(a, b, "elbo")
