"""Fuzzing what users type and the files they point elbokit at: every failure must be one of
elbokit's named errors (one clean line at the command line), never a traceback from deep inside
Python or torch. Seeded (derandomized hypothesis), about 30 s in all."""

import json
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elbokit.cli import main
from elbokit.cli.spec import FAMILIES, SpecError, parse_spec
from elbokit.config import ConfigError
from elbokit.data import DataError, load_data
from elbokit.data.episodes import load_episodes
from elbokit.train.checkpoint import CheckpointError

FUZZ = settings(
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    deadline=None,
)

NUMBERS = st.sampled_from(
    [
        "0",
        "1",
        "-1",
        "0.5",
        "2",
        "1e-30",
        "1e30",
        "1e400",
        "-1e400",
        "inf",
        "-inf",
        "nan",
        "3",
        "0.0",
        "-0.5",
        "1e-400",
        "7",
    ]
)
NAMES = st.sampled_from([*FAMILIES, "foo", "Normal", "loc", "scale", "probs", "logits", "weights"])
PUNCT = st.sampled_from(["(", ")", "[", "]", ",", "=", " ", ";", "'", "((", "]]"])
TOKENS = st.one_of(NUMBERS, NAMES, PUNCT)


@st.composite
def structured(draw, depth=0):
    """Specs built from the grammar, well formed or nearly so."""
    name = draw(NAMES)
    args = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.integers(0, 3 if depth < 2 else 1))
        if kind == 0:
            value = draw(NUMBERS)
        elif kind == 1:
            value = "[" + ", ".join(draw(st.lists(NUMBERS, max_size=4))) + "]"
        elif kind == 2:
            rows = draw(st.lists(st.lists(NUMBERS, min_size=1, max_size=3), max_size=3))
            value = "[" + ", ".join("[" + ", ".join(r) + "]" for r in rows) + "]"
        else:
            value = draw(structured(depth + 1))
        key = draw(st.sampled_from(["", "", "loc=", "scale=", "probs=", "logits=", "df="]))
        args.append(key + value)
    text = f"{name}({', '.join(args)})"
    if draw(st.booleans()):  # a typo: drop, duplicate or insert one character
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.sampled_from(["", ",", ")", "(", "[", "x"])) + text[i + 1 :]
    return text


def _parses_or_names_the_error(text: str):
    try:
        return parse_spec(text)
    except SpecError as e:
        assert str(e).count("\n") >= 1  # the spec and its caret
        return None


@FUZZ
@given(st.lists(TOKENS, max_size=14).map("".join))
def test_random_token_soup_is_parsed_or_pointed_at(text):
    _parses_or_names_the_error(text)


@FUZZ
@given(structured())
def test_grammar_shaped_specs_are_parsed_or_pointed_at(text):
    d = _parses_or_names_the_error(text)
    if d is not None:
        assert isinstance(d, torch.distributions.Distribution)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(structured(), structured())
def test_elbokit_kl_on_any_two_specs_prints_a_value_or_one_clean_error(capsys, p, q):
    code = main(["kl", p, q, "--samples", "200"])
    out, err = capsys.readouterr()
    assert code in (0, 2), err
    if code == 2:
        assert err.startswith("elbokit: ") and "Traceback" not in err
    else:
        assert "KL(p || q) =" in out


# --- the command line's options ---------------------------------------------------------------

FLAGS = st.sampled_from(
    [
        "--epochs",
        "--batch-size",
        "--lr",
        "--beta",
        "--latent-dim",
        "--hidden",
        "--data",
        "--threads",
        "--device",
        "--precision",
        "--binarize",
        "--test-fraction",
        "--free-bits",
        "--kl-schedule",
        "--objective",
        "--preset",
        "--seed",
        "--eval-k",
        "--limit",
        "--lr-typo",
        "--no-progress",
        "--resume",
        "--likelihood",
        "--latent",
        "--kl-warmup",
        "--iwae-k",
        "-h",
        "--grad-clip",
    ]
)
VALUES = st.sampled_from(
    [
        "0",
        "-1",
        "1",
        "nan",
        "inf",
        "-inf",
        "1e400",
        "abc",
        "",
        "cuda",
        "gpu",
        "bf16",
        "digits",
        "debug",
        "none",
        "2.5",
        "1e-9",
        "/nonexistent",
        "elbo",
        "cat",
    ]
)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.sampled_from(["vae", "world-model", "linear-gaussian", "vea"]),
    st.lists(st.tuples(FLAGS, VALUES), max_size=4),
)
def test_train_options_are_rejected_with_one_line_before_any_folder(
    tmp_path_factory, capsys, kind, pairs
):
    out = tmp_path_factory.mktemp("fuzz") / "run"
    argv = ["train", kind]
    for flag, value in pairs:
        argv += [flag] if flag in ("--no-progress", "-h") else [flag, value]
    # force an early failure so a valid command does not train: an epoch count of 0 is invalid
    argv += ["--epochs", "0", "--out", str(out)]
    try:
        code = main(argv)
    except SystemExit as e:  # --help
        assert e.code == 0
        capsys.readouterr()
        return
    _, err = capsys.readouterr()
    assert code == 2, err
    assert err.startswith("elbokit") and "Traceback" not in err and err.count("\n") <= 12
    assert not out.exists()  # nothing written


# --- the files it reads --------------------------------------------------------------------------

BYTES = st.binary(max_size=300)


@FUZZ
@given(BYTES)
def test_a_damaged_npz_is_a_data_error(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("npz") / "x.npz"
    path.write_bytes(raw)
    with pytest.raises(DataError):
        load_data(path)


@FUZZ
@given(BYTES, st.booleans())
def test_damaged_idx_files_are_data_errors(tmp_path_factory, raw, gz):
    import gzip

    folder = tmp_path_factory.mktemp("idx")
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    (folder / name).write_bytes(gzip.compress(raw) if gz else raw)
    try:
        load_data(folder)
    except DataError:
        pass


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.dictionaries(
        st.sampled_from(["image", "action", "reward", "discount", "x"]),
        st.sampled_from(["u8img", "f32", "nan", "short", "2d", "str", "big"]),
        max_size=5,
    ),
    st.booleans(),
)
def test_damaged_episode_files_are_data_errors(tmp_path_factory, spec, truncate):
    arrays = {
        "u8img": np.zeros((5, 1, 8, 8), np.uint8),
        "f32": np.ones(5, np.float32),
        "nan": np.array([0.0, np.nan, 1, 1, 1], np.float32),
        "short": np.ones(2, np.float32),
        "2d": np.ones((5, 2), np.float32),
        "str": np.array(["a"] * 5),
        "big": np.full(5, 7.0, np.float32),
    }
    folder = tmp_path_factory.mktemp("eps")
    for i in range(3):
        path = folder / f"episode-{i:06d}.npz"
        np.savez(path, **{k: arrays[v] for k, v in spec.items()})
        if truncate and i == 1:
            path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError):
        load_episodes(folder, seq_len=2)


@FUZZ
@given(
    st.one_of(
        BYTES.map(lambda b: b.decode("latin-1")),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
            lambda c: (
                st.lists(c, max_size=3)
                | st.dictionaries(
                    st.sampled_from(
                        [
                            "kind",
                            "format",
                            "config",
                            "run",
                            "model",
                            "train",
                            "data",
                            "lr",
                            "optim",
                            "epochs",
                        ]
                    ),
                    c,
                    max_size=4,
                )
            ),
            max_leaves=12,
        ).map(json.dumps),
    )
)
def test_a_damaged_config_json_is_a_named_error(tmp_path_factory, capsys, text):
    from elbokit import recipes

    run = tmp_path_factory.mktemp("run")
    (run / "config.json").write_text(text)
    with pytest.raises((CheckpointError, ConfigError)):
        recipes.open_run(run)
    assert main(["eval", str(run)]) == 2
    assert "Traceback" not in capsys.readouterr().err


@FUZZ
@given(BYTES, st.booleans())
def test_a_damaged_checkpoint_is_a_checkpoint_error(tmp_path_factory, raw, header):
    from elbokit import recipes

    run = tmp_path_factory.mktemp("ckpt")
    folder = _trained(run)
    target = folder / "model.safetensors"
    data = target.read_bytes()
    # a garbled header (the first 8 bytes give its length), or a truncated / replaced body
    target.write_bytes(raw[:8] + data[8:] if header else data[: len(raw)] + raw)
    try:
        recipes.open_run(run).learner()
    except CheckpointError:
        pass


_TRAINED = {}


def _trained(run):
    """A tiny finished linear-gaussian run, trained once and copied for each example."""
    import shutil

    from elbokit import recipes

    if "src" not in _TRAINED:
        import tempfile

        src = __import__("pathlib").Path(tempfile.mkdtemp()) / "run"
        lg = recipes.get_recipe("linear-gaussian")
        recipes.train(
            lg,
            lg.preset("debug", {"train": {"progress": False}, "evaluate": {"eval_k": 0}}),
            out=src,
            say=lambda *a: None,
        )
        _TRAINED["src"] = src
    shutil.rmtree(run)
    shutil.copytree(_TRAINED["src"], run)
    state = json.loads((run / "state.json").read_text())
    return run / state["checkpoint"]


def test_zipfile_is_imported_for_the_npz_reader():
    assert zipfile.BadZipFile  # read_npz catches it: a .npz is a zip


EVAL_FLAGS = st.sampled_from(["--k", "--limit", "--seed", "--precision", "--device", "--kk", "-k"])
EVAL_VALUES = st.sampled_from(["0", "-1", "1", "2", "abc", "nan", "1e400", "", "cuda", "gpu",
                               "bf16", "fp16", "cuda:7", "3.5"])  # fmt: skip


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip
@given(st.lists(st.tuples(EVAL_FLAGS, EVAL_VALUES), max_size=3), st.booleans())
def test_eval_and_report_options_end_in_a_value_or_one_clean_line(
    tmp_path_factory, capsys, pairs, report
):
    run = tmp_path_factory.mktemp("evalrun")
    _trained(run)
    argv = ["report" if report else "eval", str(run)]
    for flag, value in pairs:
        argv += [flag, value]
    code = main(argv)
    _, err = capsys.readouterr()
    assert code in (0, 2), err
    if code == 2:
        assert err.startswith("elbokit") and "Traceback" not in err and err.count("\n") <= 3, err


LG_FLAGS = st.sampled_from(["--data", "--latent-dim", "--dim", "--project", "--true-latent-dim",
                            "--noise", "--examples", "--test-fraction", "--reconstruction",
                            "--objective", "--lr", "--sigma", "--no-learn-sigma", "--batch-size"])  # fmt: skip
LG_VALUES = st.sampled_from(["synthetic", "digits", "iris", "nowhere", "/tmp", "0", "1", "2", "8",
                             "100", "-1", "0.5", "nan", "closed", "iwae", "1e-9", "1e9"])  # fmt: skip


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip
@given(st.lists(st.tuples(LG_FLAGS, LG_VALUES), max_size=3))
def test_linear_gaussian_runs_train_or_stop_with_one_line(tmp_path_factory, capsys, pairs):
    """Options that pass the parser reach the data and the model: they train (a debug run, a
    second) or stop with a named error, a divergence included."""
    out = tmp_path_factory.mktemp("lgfuzz") / "run"
    argv = ["train", "linear-gaussian", "--preset", "debug", "--no-progress", "--eval-k", "0"]
    for flag, value in pairs:
        argv += [flag] if flag == "--no-learn-sigma" else [flag, value]
    code = main([*argv, "--out", str(out)])
    _, err = capsys.readouterr()
    assert code in (0, 2, 3), err
    if code:
        assert err.startswith("elbokit") and "Traceback" not in err and err.count("\n") <= 3, err
    if code == 2:
        assert not out.exists()  # rejected before training: no folder left behind


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from([".png", ".jpg", ".pgm", ".txt"]), BYTES,
                          st.booleans()), min_size=1, max_size=4))  # fmt: skip
def test_a_folder_of_damaged_or_odd_images_is_a_data_error(tmp_path_factory, files):
    """Garbled image files, real images of different sizes or modes, files that are not images."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("imgs")
    for i, (suffix, raw, real) in enumerate(files):
        path = folder / f"im{i}{suffix}"
        if real and suffix != ".txt":
            size = 8 + (len(raw) % 3) * 4  # sizes that may differ between files
            mode = "RGB" if len(raw) % 2 else "L"
            Image.new(mode, (size, size), color=len(raw) % 255).save(path)
        else:
            path.write_bytes(raw)
    try:
        data = load_data(folder)
    except DataError:
        return
    assert data.train.ndim == 4 and len(data.train) + len(data.test) >= 2
