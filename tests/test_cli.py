"""The command line, as a user types it: output, errors with a caret, the figure."""

import json
import subprocess
import sys

import matplotlib.image
import pytest

from elbokit.cli import main
from elbokit.cli.spec import SpecError, parse_spec


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_kl_prints_both_directions_in_nats_and_bits(capsys):
    code, out, _ = run(capsys, "kl", "normal(0, 1)", "normal(1, 2)")
    assert code == 0
    # KL(N(0,1) || N(1,4)) = log 2 + (1 + 1) / 8 - 1/2; the reverse = -log 2 + (4 + 1) / 2 - 1/2
    assert "KL(p || q) = 0.443147 nats = 0.639326 bits (closed form)" in out
    assert "KL(q || p) = 1.30685 nats" in out


def test_kl_json_and_monte_carlo_with_standard_error(capsys):
    code, out, _ = run(
        capsys,
        "kl",
        "mixture([0.3, 0.7], normal(0, 1), normal(3, 0.5))",
        "normal(2, 2)",
        "--json",
        "--check",
    )
    assert code == 0
    rec = json.loads(out)
    mc, ref = rec["kl_pq"], rec["quadrature_pq"]
    assert mc["method"].startswith("Monte Carlo") and mc["stderr_nats"] > 0
    assert abs(mc["nats"] - ref["nats"]) < 4 * mc["stderr_nats"]


@pytest.mark.parametrize(
    ("p", "q"),
    [
        ("mvn([0, 0], [[1, 0.5], [0.5, 1]])", "diagnormal([0, 1], [1, 2])"),
        ("categorical([0.2, 0.8])", "categorical(logits=[0, 0])"),
        ("bernoulli(0.3)", "bernoulli(logits=2)"),
        ("beta(2, 3)", "uniform(0, 1)"),
        ("gamma(2, 3)", "exponential(1)"),
        ("laplace(0, 1)", "normal(0, 1)"),
        ("studentt(5)", "cauchy(0, 1)"),
        ("lowrank([0, 0], [[1], [0.5]], [1, 1])", "mvn([0, 0], [[2, 0], [0, 2]])"),
        ("poisson(3)", "poisson(4)"),
        ("categorical(logits=[0, 1, -inf])", "categorical([0.5, 0.25, 0.25])"),
    ],
)
def test_the_families_the_cli_accepts(capsys, p, q):
    code, out, err = run(capsys, "kl", p, q, "--samples", "2000")
    assert code == 0, err
    assert "KL(p || q) =" in out and "KL(q || p) =" in out


@pytest.mark.parametrize(
    ("spec", "message", "caret"),
    [
        ("normal(0 1)", "expected ',' or ')', found '1'", 9),
        ("normal(0, 1", "found end of spec", 11),
        ("normal(0, -1)", "scale = -1.0 does not satisfy GreaterThan", 10),
        ("categorical([0.2, 0.7])", "must be non-negative and sum to 1", 12),
        ("foo(1)", "unknown distribution 'foo'", 0),
        ("normal(0, 1) x", "unexpected 'x' after the distribution", 13),
        ("normal(0, 1, 2)", "normal takes 2 positional argument(s)", 13),
        ("normal(loc=0, sigma=1)", "normal has no argument 'sigma'", 14),
        ("normal(0)", "normal is missing scale", 0),
        ("mvn([0, 0], [[1, 2], [2, 1]])", "does not satisfy PositiveDefinite", 12),
        ("mixture([0.5, 0.5], normal(0, 1), laplace(0, 1))", "share one family", 34),
        ("mixture([0.5, 0.5], normal(0, 1))", "2 weight(s) but 1 component(s)", 8),
        ("normal(0, 1; 2)", "unexpected character ';'", 11),
        ("mvn([0, 0], [[1, 0], [0]])", "rectangular", 12),
        ("normal(0, inf)", "scale = inf must be finite", 10),
        ("categorical(logits=[0, inf])", "logits = [0.0, inf] must be finite", 19),
    ],
)
def test_malformed_specs_point_at_the_bad_token(spec, message, caret):
    with pytest.raises(SpecError) as err:
        parse_spec(spec)
    assert message in str(err.value)
    assert err.value.pos == caret
    assert str(err.value).endswith("\n  " + " " * caret + "^")


def test_bad_spec_exits_2_with_the_caret_on_stderr(capsys):
    code, out, err = run(capsys, "kl", "normal(0 1)", "normal(0, 1)")
    assert code == 2 and out == ""
    assert "bad distribution spec" in err and "  normal(0 1)\n           ^" in err


def test_mismatched_event_shapes_exit_2(capsys):
    code, _, err = run(capsys, "kl", "normal(0, 1)", "mvn([0, 0], [[1, 0], [0, 1]])")
    assert code == 2 and "event shape" in err


def test_kl_plot_writes_a_png(tmp_path, capsys):
    out = tmp_path / "figs" / "kl.png"
    code, stdout, _ = run(capsys, "kl", "plot", "--out", str(out), "--mus", "0", "1")
    assert code == 0 and str(out) in stdout
    image = matplotlib.image.imread(out)
    assert image.shape[0] > 300 and image.shape[1] > 600
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_kl_plot_rejects_a_bad_axis(capsys, tmp_path):
    code, _, err = run(capsys, "kl", "plot", "--out", str(tmp_path / "x.png"), "--sigma-min", "0")
    assert code == 2 and "0 < sigma_min < sigma_max" in err


def test_usage_and_unknown_command(capsys):
    assert run(capsys, "--help")[0] == 0
    code, _, err = run(capsys, "trian")
    assert code == 2 and "unknown command 'trian'" in err


def test_console_script_and_module_entry_points():
    # The installed command, as a user runs it (a separate process, nothing in-process).
    res = subprocess.run(
        [sys.executable, "-m", "elbokit", "kl", "normal(0, 1)", "normal(0, 1)"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0 and "KL(p || q) = 0 nats" in res.stdout
    import shutil

    exe = shutil.which("elbokit")
    if exe:
        res = subprocess.run([exe, "kl", "--help"], capture_output=True, text=True)
        assert (
            res.returncode == 0 and "--method" in res.stdout and "normal(loc, scale)" in res.stdout
        )
