"""The UCI regression benchmark's folder layout: any such folder is read (small ones written here;
the seven under ../shared/datasets/uci when they are there), standardized by its training split,
and every fault named by file and line before training."""

from pathlib import Path

import numpy as np
import pytest

from elbokit.cli import main
from elbokit.data.labelled import load_labelled
from elbokit.data.readers import DataError
from elbokit.data.uci import read_uci, uci_settings

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "uci"


def _folder(root: Path, rows: int = 40, splits: int = 2, seed: int = 0) -> Path:
    """A folder of the layout: y = 2 x0 - x1 + noise, 3 features, the target last; splits of 3/4."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3)) * [1.0, 5.0, 0.1] + [0.0, 10.0, -3.0]
    y = 2 * x[:, 0] - x[:, 1] + 0.1 * rng.normal(size=rows)
    root.mkdir(parents=True)
    np.savetxt(root / "data.txt", np.column_stack([x, y]))
    (root / "index_features.txt").write_text("0\n1\n2\n")
    (root / "index_target.txt").write_text("3\n")
    (root / "n_splits.txt").write_text(f"{splits}\n")
    for k in range(splits):
        perm = rng.permutation(rows)
        cut = rows * 3 // 4
        (root / f"index_train_{k}.txt").write_text("\n".join(map(str, perm[:cut])) + "\n")
        (root / f"index_test_{k}.txt").write_text("\n".join(map(str, perm[cut:])) + "\n")
    return root


def test_a_folder_is_read_and_standardized_by_its_training_split(tmp_path):
    folder = _folder(tmp_path / "toy")
    xtr, ytr, _, yte = read_uci(folder, 1)
    raw = np.loadtxt(folder / "data.txt")
    train = np.loadtxt(folder / "index_train_1.txt", dtype=int)
    assert np.array_equal(xtr, raw[train, :3]) and np.array_equal(ytr, raw[train, 3])
    d = load_labelled(str(folder), split=1)
    assert d.task == "regression" and len(d.y_train) == 30 and len(d.y_test) == 10
    assert np.allclose(d.x_train.mean(0), 0, atol=1e-5) and np.allclose(
        d.x_train.std(0, unbiased=False), 1, atol=1e-4
    )
    # the test half by the training half's statistics, and back in the target's units
    assert np.allclose(d.y_test.double().numpy() * d.y_std + d.y_mean, yte, atol=1e-4)
    assert d.y_mean == pytest.approx(ytr.mean()) and d.y_std == pytest.approx(ytr.std())


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        (lambda f: (f / "index_test_1.txt").unlink(), "index_test_1.txt: missing"),
        (lambda f: (f / "data.txt").write_text("1 2 3 4\n1 x 3 4\n"), "data.txt, line 2: 'x' is not a number"),
        (lambda f: (f / "data.txt").write_text("1 2 3 4\n1 nan 3 4\n"), "data.txt, line 2, column 1: nan"),
        (lambda f: (f / "index_train_1.txt").write_text("0\n1\n999\n"), "index_train_1.txt, line 3: row 999 is out of range"),
        (lambda f: (f / "index_target.txt").write_text("7\n"), "column 7 is out of range"),
        (lambda f: (f / "index_test_1.txt").write_text((f / "index_train_1.txt").read_text().splitlines()[0] + "\n"), "in both"),
        (lambda f: (f / "index_features.txt").write_text("0\n1.5\n"), "index_features.txt, line 2"),
    ],
)  # fmt: skip
def test_a_malformed_folder_is_named_by_file_and_line(tmp_path, fault, said):
    folder = _folder(tmp_path / "bad")
    fault(folder)
    with pytest.raises(DataError, match=said.replace("(", r"\(").replace(")", r"\)")):
        read_uci(folder, 1)


def test_a_split_out_of_range_and_a_bad_folder_end_in_one_line_before_training(tmp_path, capsys):
    folder = _folder(tmp_path / "toy")
    out = tmp_path / "run"
    assert main(["train", "bnn", "--data", str(folder), "--split", "2", "--out", str(out)]) == 2
    assert "--split 2" in capsys.readouterr().err and not out.exists()
    assert main(["train", "bnn", "--data", str(folder), "--split", "0", "--epochs", "5", "--batch-size", "10",
                 "--eval-samples", "10", "--no-progress", "--out", str(out)]) == 0  # fmt: skip
    assert out.name == "run" and (out / "eval.json").exists()


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/datasets/uci is not here")
def test_the_shared_benchmark_folders_read_as_published():
    """The seven folders: rows x features as the benchmark's README lists them, every split
    disjoint and covering the rows (protein: 5 splits, the others 20)."""
    sizes = {"bostonHousing": (506, 13), "energy": (768, 8), "naval-propulsion-plant": (11934, 16),
             "power-plant": (9568, 4), "protein-tertiary-structure": (45730, 9),
             "wine-quality-red": (1599, 11), "yacht": (308, 6)}  # fmt: skip
    for name, (rows, features) in sizes.items():
        folder = SHARED / name
        if not folder.exists():
            continue
        s = uci_settings(folder)
        assert s["n_splits"] == (5 if name.startswith("protein") else 20)
        xtr, _, xte, _ = read_uci(folder, s["n_splits"] - 1)
        assert xtr.shape[1] == features and len(xtr) + len(xte) == rows, name
