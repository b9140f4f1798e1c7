"""8-bit Fashion-MNIST test log-likelihood: a one-layer VAE, a hierarchical VAE and a diffusion
model side by side on the same test images, each trained with several seeds (one Optuna study per
model, the seeds its runs), and the differences paired per image within a seed, reported over the
seeds (``elbokit.evaluate.paired``).

    python benchmarks/fashion_table.py [--seeds 3] [--first-seed 0] [--vae-epochs 10]
        [--diffusion-epochs 2] [--k 1000] [--limit 0] [--diffusion-limit 100]
        [--out runs/fashion-table] [--data fashion-mnist] [--pool N]

The VAEs (`--preset fashion-8bit`: discretized logistic, bits/dim) are scored by importance
sampling with --k draws on --limit test images (0: all 10,000); the diffusion model by its exact
bound over every t on its first --diffusion-limit test images (every t of every image: ~2 s per
image on 2 cores), where the VAEs' values of the same images are paired with it. Runs already
in --out are reused (the studies resume), so the table can be built in pieces; more seeds are
added by a second study in the same --out (`--first-seed 3 --seeds 3` after a first `--seeds 3`:
seeds 3, 4, 5 in FOLDER-from-seed-3), and the table pools the seeds of every study of a model
(--pool N: only the first N seeds of each, e.g. the three whose diffusion bound was evaluated on
every test image, `--diffusion-limit 0 --pool 3`).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

LN2 = math.log(2)


def models(args) -> dict[str, tuple[str, list[str], dict]]:
    """name -> (kind, the study's one-value parameter, the fixed settings)."""
    vae = {"data": {"source": args.data, "binarize": "none"},
           "model": {"likelihood": "discretized-logistic"},
           "train": {"epochs": args.vae_epochs, "threads": args.threads, "seed": args.first_seed},
           "evaluate": {"eval_k": 0}}  # fmt: skip
    hvae = json.loads(json.dumps(vae))
    hvae["objective"] = {"free_bits": args.free_bits, "free_bits_mode": "per_layer",
                         "kl_schedule": "linear", "kl_warmup": args.warmup}  # fmt: skip
    diffusion = {"data": {"source": args.data},
                 "train": {"epochs": args.diffusion_epochs, "threads": args.threads,
                           "seed": args.first_seed},
                 "evaluate": {"limit": -1}}  # fmt: skip
    return {
        "VAE, 1 layer": ("vae", ["layers=1"], vae),
        f"HVAE, {args.layers} layers": ("vae", [f"layers={args.layers}"], hvae),
        "diffusion": ("diffusion", [f"epochs={args.diffusion_epochs}"], diffusion),
    }


def study_folder(name: str, args, first_seed: int) -> Path:
    base = name.split(",")[0].lower().replace(" ", "-")
    return args.out / (base if first_seed == 0 else f"{base}-from-seed-{first_seed}")


def run_study(name, kind, params, fixed, args, say) -> tuple[list[Path], float]:
    """Runs this model's study for --seeds seeds from --first-seed; returns the runs of every
    study of the model in --out (seeds pooled, in seed order) and the mean training time per run."""
    from elbokit import recipes
    from elbokit.study import Study

    folder = study_folder(name, args, args.first_seed)
    base = recipes.get_recipe(kind).preset("default", fixed)
    folder.mkdir(parents=True, exist_ok=True)
    study = Study.create(kind, params, base, folder=folder, name=folder.name, sampler="grid",
                         storage=f"sqlite:///{folder / 'study.db'}", trials=1, seeds=args.seeds,
                         pruner="none")  # fmt: skip
    study.work(say=say)
    runs, seconds = [], []
    base = study_folder(name, args, 0)
    for other in sorted(args.out.iterdir()):
        if other != base and not other.name.startswith(base.name + "-from-seed-"):
            continue
        db = other / "study.db"
        if not db.exists():
            continue
        done = Study.join(f"sqlite:///{db}", other.name)
        (trial,) = [t for t in done.study.get_trials() if t.state.name == "COMPLETE"]
        runs += [Path(r) for r in trial.user_attrs["runs"]]
        seconds.append(trial.user_attrs.get("seconds", math.nan) / len(trial.user_attrs["runs"]))
    runs.sort(key=lambda r: int(r.name.split("-")[-1]))
    return runs, sum(seconds) / len(seconds)


def wanted(kind: str, args) -> int:
    """How many test images a model's row is scored on (--limit 0: every test image)."""
    return (args.diffusion_limit if kind == "diffusion" else args.limit) or args.test_size


def evaluate(run: Path, kind: str, args) -> dict:
    """The run's eval.json, evaluated now unless one of at least the asked size is there."""
    from elbokit import recipes

    path = run / "eval.json"
    n = args.diffusion_limit if kind == "diffusion" else args.limit
    if path.exists():
        r = json.loads(path.read_text())
        # one of more images serves too: the table takes its first ones, the same images
        if r.get("examples", 0) >= wanted(kind, args) and (
            kind == "diffusion" or r.get("k") == args.k
        ):
            return r
    options = {"limit": n} if kind == "diffusion" else {"k": args.k, "limit": n}
    t0 = time.perf_counter()
    r = recipes.evaluate(run, options, say=lambda *a: None)
    r["eval_seconds"] = time.perf_counter() - t0
    return r


def bits(r: dict, kind: str) -> list[float]:
    """Per-image bits/dim."""
    if kind == "diffusion":
        return r["per_image"]["bits_per_dim"]
    return [-v / (784 * LN2) for v in r["per_image"]["log_likelihood"]]


def main() -> None:
    from elbokit.evaluate.paired import paired_difference
    from elbokit.train.settings import describe_machine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="this call's studies' first seed")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--vae-epochs", type=int, default=10)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--free-bits", type=float, default=2.0, help="per layer, the HVAE's")
    ap.add_argument("--warmup", type=int, default=6000, help="KL warm-up steps, the HVAE's")
    ap.add_argument("--diffusion-epochs", type=int, default=2)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--limit", type=int, default=0, help="VAEs' test images (0: all)")
    ap.add_argument("--diffusion-limit", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pool", type=int, default=0, help="the table's first N seeds (0: all)")
    ap.add_argument("--skip", nargs="*", default=[], help="models left out: vae hvae diffusion")
    ap.add_argument("--out", type=Path, default=Path("runs/fashion-table"))
    args = ap.parse_args()
    if args.pool < 0:
        ap.error(f"--pool {args.pool}: expected a number of seeds >= 0 (0: all)")
    machine = describe_machine()
    print(machine)
    from elbokit.data import load_data

    args.test_size = len(load_data(args.data).test)
    rows = {}
    for name, (kind, params, fixed) in models(args).items():
        if name.split(",")[0].lower() in args.skip:
            continue
        t0 = time.perf_counter()
        runs, train_s = run_study(name, kind, params, fixed, args, print)
        runs = runs[: args.pool or None]
        evals = [evaluate(r, kind, args) for r in runs]
        per = [bits(r, kind)[: wanted(kind, args)] for r in evals]
        means = [sum(v) / len(v) for v in per]
        m = sum(means) / len(means)
        se = math.sqrt(sum((v - m) ** 2 for v in means) / (len(means) - 1) / len(means))
        rows[name] = {"kind": kind, "runs": [str(r) for r in runs], "per_image": per,
                      "bits_per_dim": m, "stderr_over_seeds": se, "seeds": means,
                      "train_seconds_per_seed": train_s, "images": len(per[0]),
                      "wall_seconds": time.perf_counter() - t0}  # fmt: skip
        print(f"{name}: {m:.4f} +- {se:.4f} bits/dim over {len(runs)} seeds ({len(per[0])} images "
              f"each), training {train_s / 60:.1f} min per seed")  # fmt: skip
    print(f"\n{machine}\n\n| model | test bits/dim (mean +- SE over seeds) | images | per seed | "
          "training per seed |\n|---|---|---|---|---|")  # fmt: skip
    for name, r in rows.items():
        print(f"| {name} | {r['bits_per_dim']:.4f} +- {r['stderr_over_seeds']:.4f} | {r['images']} | "
              + ", ".join(f"{v:.4f}" for v in r["seeds"])
              + f" | {r['train_seconds_per_seed'] / 60:.1f} min |")  # fmt: skip
    print("\n| A - B, paired per image within a seed | images | difference (bits/dim), mean +- SE "
          "over seeds |\n|---|---|---|")  # fmt: skip
    names = list(rows)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            n = min(rows[a]["images"], rows[b]["images"])
            wrap = [[{"per_image": {"bpd": v[:n]}} for v in rows[x]["per_image"]] for x in (a, b)]
            d = paired_difference(*wrap, "bpd")
            print(f"| {a} - {b} | {n} | {d['mean']:+.4f} +- {d['stderr']:.4f} |")
    (args.out / "table.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    print(f"\nwrote {args.out / 'table.json'}")


if __name__ == "__main__":
    main()
