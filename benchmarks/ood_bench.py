"""Out-of-distribution detection by likelihood: VAEs trained on Fashion-MNIST, its 10,000 test images
against MNIST digits (mnist5k), every score of `elbokit eval RUN --ood mnist5k` side by side, beside
the published AUROCs (Havtorn et al. 2021; Nalisnick et al. 2019 found the likelihood's below 0.5).

    python benchmarks/ood_bench.py [--epochs 20] [--layers 1 3] [--k 100] [--limit 2000]
        [--run RUN ...]   (evaluate runs already trained instead)

Each model is trained with `elbokit train vae --preset fashion --layers L` (binarized Fashion-MNIST,
top-down inference for L > 1), then evaluated on the first --limit test images and as many MNIST
digits; the time of each part is printed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

# Published AUROC on FashionMNIST -> MNIST (see docs/benchmarks.md for the sources)
PUBLISHED = {
    "likelihood (Havtorn et al. 2021, Table 2, HVAE)": None,
    "LLR>k (Havtorn et al. 2021, HVAE)": None,
}


def main() -> None:
    from elbokit import recipes
    from elbokit.train.settings import describe_machine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--layers", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--k", type=int, default=100, help="importance samples per image")
    ap.add_argument("--limit", type=int, default=2000, help="test images scored (0: all 10,000)")
    ap.add_argument("--run", nargs="*", default=[], help="trained runs to evaluate instead")
    ap.add_argument("--out", type=Path, default=None, help="keep the runs here")
    args = ap.parse_args()
    print(describe_machine())
    recipe = recipes.get_recipe("vae")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        runs = [Path(r) for r in args.run]
        times = {}
        if not runs:
            for layers in args.layers:
                cfg = recipe.preset("fashion", {"model": {"layers": layers},
                                                "train": {"epochs": args.epochs, "progress": True},
                                                "evaluate": {"eval_k": 0}})  # fmt: skip
                t0 = time.perf_counter()
                out = recipes.train(recipe, cfg, out=root / f"fashion-L{layers}")
                times[out] = time.perf_counter() - t0
                runs.append(out)
        for run in runs:
            t0 = time.perf_counter()
            r = recipes.evaluate(run, {"k": args.k, "limit": args.limit, "ood": "mnist5k"})
            seconds = time.perf_counter() - t0
            layers = recipes.open_run(run).config.model.layers
            rows.append((run, layers, r, times.get(run), seconds))
    print(
        "\n| model | score | AUROC | AUPRC | FPR at 80% TPR | test log p(x) (nats) | train / eval s |"
    )
    print("|---|---|---|---|---|---|---|")
    for _run, layers, r, train_s, eval_s in rows:
        for name, m in r["ood"]["metrics"].items():
            t = f"{train_s:.0f}" if train_s else "-"
            print(f"| {layers} layer(s) | {name} | {m['auroc']:.3f} | {m['auprc']:.3f} | "
                  f"{m['fpr_at_80_tpr']:.3f} | {r['log_likelihood']:.2f} | {t} / {eval_s:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
