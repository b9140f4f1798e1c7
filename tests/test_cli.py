"""The command line, as a user types it: output, errors with a caret, the figure."""

import json
import math
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
import torch
from scipy import integrate, stats
from torch.distributions import Beta, Exponential, Gamma, Uniform
from torch.distributions.kl import kl_divergence as torch_kl

from elbokit.cli import main
from elbokit.cli.spec import SpecError, parse_spec
from references import dense_gaussian_kl


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


# Independent references for both directions (KL(p || q), KL(q || p)), in float64: torch's own
# closed forms where torch has the pair, scipy quadrature of scipy.stats densities, explicit sums
# for discrete pairs, the dense textbook formula for Gaussians.
def _torch_both(p, q):
    return tuple(float(torch_kl(a, b)) for a, b in ((p, q), (q, p)))


def _quad_both(p, q):
    def integrand(x, a, b):
        pa = a.pdf(x)  # 0 far out in a's tail, where b's log density may already be -inf
        return 0.0 if pa == 0 else pa * (a.logpdf(x) - b.logpdf(x))

    def kl(a, b):  # the halves apart: densities with a kink at 0 (Laplace) integrate better
        return sum(
            integrate.quad(integrand, lo, hi, args=(a, b), epsabs=1e-13, epsrel=1e-11, limit=200)[0]
            for lo, hi in ((-np.inf, 0.0), (0.0, np.inf))
        )

    return kl(p, q), kl(q, p)


def _sum_both(p, q):
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)

    def kl(a, b):
        if np.any((a > 0) & (b == 0)):
            return math.inf
        m = a > 0
        return float(np.sum(a[m] * np.log(a[m] / b[m])))

    return kl(p, q), kl(q, p)


def _poisson_both(rate_p, rate_q):
    k = np.arange(0, 40)  # the mass beyond k = 39 is below 1e-16 for both rates
    assert max(stats.poisson.sf(k[-1], rate_p), stats.poisson.sf(k[-1], rate_q)) < 1e-16
    return _sum_both(stats.poisson.pmf(k, rate_p), stats.poisson.pmf(k, rate_q))


def _dense_both(mu_p, cov_p, mu_q, cov_q):
    return dense_gaussian_kl(mu_p, cov_p, mu_q, cov_q), dense_gaussian_kl(mu_q, cov_q, mu_p, cov_p)


def _f64(*values):
    return tuple(torch.tensor(v, dtype=torch.float64) for v in values)


_W = np.array([[1.0], [0.5]])
_E = np.exp([0.0, 1.0])
FAMILY_CASES = [
    ("mvn([0, 0], [[1, 0.5], [0.5, 1]])", "diagnormal([0, 1], [1, 2])",
     lambda: _dense_both([0, 0], [[1, 0.5], [0.5, 1]], [0, 1], np.diag([1.0, 4.0]))),
    ("categorical([0.2, 0.8])", "categorical(logits=[0, 0])",
     lambda: _sum_both([0.2, 0.8], [0.5, 0.5])),
    ("bernoulli(0.3)", "bernoulli(logits=2)",
     lambda: _sum_both([0.3, 0.7], [1 / (1 + math.exp(-2)), 1 / (1 + math.exp(2))])),  # [P(1), P(0)]
    ("beta(2, 3)", "uniform(0, 1)",
     lambda: _torch_both(Beta(*_f64(2.0, 3.0)), Uniform(*_f64(0.0, 1.0)))),
    ("gamma(2, 3)", "exponential(1)",
     lambda: _torch_both(Gamma(*_f64(2.0, 3.0)), Exponential(*_f64(1.0)))),
    ("laplace(0, 1)", "normal(0, 1)", lambda: _quad_both(stats.laplace(0, 1), stats.norm(0, 1))),
    ("studentt(5)", "cauchy(0, 1)", lambda: _quad_both(stats.t(5), stats.cauchy(0, 1))),
    ("lowrank([0, 0], [[1], [0.5]], [1, 1])", "mvn([0, 0], [[2, 0], [0, 2]])",
     lambda: _dense_both([0, 0], _W @ _W.T + np.eye(2), [0, 0], 2 * np.eye(2))),
    ("poisson(3)", "poisson(4)", lambda: _poisson_both(3.0, 4.0)),
    ("categorical(logits=[0, 1, -inf])", "categorical([0.5, 0.25, 0.25])",
     lambda: _sum_both([*(_E / _E.sum()), 0.0], [0.5, 0.25, 0.25])),  # KL(q || p) = inf
]  # fmt: skip


@pytest.mark.parametrize(("p", "q", "reference"), FAMILY_CASES, ids=[c[0] for c in FAMILY_CASES])
def test_the_families_the_cli_accepts(capsys, p, q, reference):
    code, out, err = run(capsys, "kl", p, q, "--samples", "2000", "--json")
    assert code == 0, err
    rec = json.loads(out)
    assert (rec["p"], rec["q"]) == (p, q)
    for key, want in zip(("kl_pq", "kl_qp"), reference(), strict=True):
        got = rec[key]
        # strict JSON has no Infinity: an infinite KL is the string "inf"
        got = {k: float(v) if k in ("nats", "bits") else v for k, v in got.items()}
        if math.isinf(want):
            assert got["nats"] == got["bits"] == math.inf, got
            continue
        assert got["bits"] == pytest.approx(got["nats"] / math.log(2), rel=1e-12)
        if got["method"].startswith("Monte Carlo"):
            assert "2000 samples" in got["method"] and got["stderr_nats"] > 0, got
            assert abs(got["nats"] - want) <= 4 * got["stderr_nats"] + 1e-9, (key, got, want)
        else:
            assert got["method"] == "closed form" and "stderr_nats" not in got, got
            assert got["nats"] == pytest.approx(want, rel=1e-7, abs=1e-10), (key, got, want)


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
