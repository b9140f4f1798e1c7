"""The main job's end: evaluation and a self-contained report with every figure."""

import base64
import json
import re
from pathlib import Path

import matplotlib.colors
import matplotlib.image
import numpy as np
import torch
from torch.distributions import Bernoulli, Normal
from torch.distributions.kl import kl_divergence as torch_kl

from elbokit.cli import main
from elbokit.models.vae import VAE, VAEConfig
from elbokit.report import linear_gaussian, metrics, vae, world_model
from references import train_debug

FIGURES = ("samples", "reconstructions", "traversals", "latent_map", "curves", "kl_per_unit")
BLUE, GRAY = (matplotlib.colors.to_rgba(c) for c in ("tab:blue", "tab:gray"))


# --- what the figures are drawn from -------------------------------------------------------------
# Each report module writes its figures through `save`; the tests catch the figure there (and
# still write the PNG), then read back the drawn data: the image grid's pixels, the lines' points,
# the bars' heights. The expected values are built apart from the report code.


def _capture(monkeypatch, *modules) -> dict:
    figures = {}
    for module in modules:

        def save(fig, path, real=module.save):
            figures[Path(path).stem] = fig
            return real(fig, path)

        monkeypatch.setattr(module, "save", save)
    return figures


def _tiles(ax, rows: int, cols: int, h: int, w: int) -> np.ndarray:
    """The rows * cols tiles of the grey image grid drawn on `ax` (1-pixel white gaps), row by
    row: (rows * cols, h, w) in [0, 1]."""
    (im,) = ax.images
    assert im.get_clim() == (0, 1)
    a = np.asarray(im.get_array(), dtype=np.float64)
    assert a.shape == (rows * (h + 1) + 1, cols * (w + 1) + 1)
    gap = np.ones(a.shape, dtype=bool)
    tiles = []
    for r in range(rows):
        for c in range(cols):
            y, x = 1 + r * (h + 1), 1 + c * (w + 1)
            tiles.append(a[y : y + h, x : x + w])
            gap[y : y + h, x : x + w] = False
    assert np.all(a[gap] == 1.0)
    return np.stack(tiles)


SHAPE = (1, 4, 5)  # not square, so a transposed tile shows


def _model(latent_dim: int) -> VAE:
    torch.manual_seed(0)
    return VAE(VAEConfig(data_shape=SHAPE, latent_dim=latent_dim, hidden=(8,))).eval()


def _decoded(model, z: torch.Tensor) -> np.ndarray:
    """The Bernoulli decoder's means E[x | z], (N, h, w), by torch.distributions."""
    with torch.no_grad():
        logits = model.decoder(z).reshape(len(z), *model.data_shape)
    return Bernoulli(logits=logits.double()).mean[:, 0].numpy()


def _images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, *SHAPE), 0.4), generator=g)


def _posterior(model, x: torch.Tensor):
    """The Gaussian posterior's (mu, std), float64: the encoder's output is [mu, logvar]."""
    with torch.no_grad():
        mu, logvar = model.encoder(x.flatten(1)).double().chunk(2, -1)
    return mu, torch.exp(0.5 * logvar)


def test_samples_are_the_decoded_means_of_seeded_prior_draws(tmp_path, monkeypatch):
    figs = _capture(monkeypatch, vae)
    model = _model(3)
    vae.samples(model, tmp_path / "samples.png", n=6, seed=3)
    z = torch.randn(6, 3, generator=torch.Generator().manual_seed(3))  # z ~ N(0, I), seed 3
    drawn = _tiles(figs["samples"].axes[0], 2, 3, 4, 5)  # int(sqrt(6)) = 2 rows
    np.testing.assert_allclose(drawn, _decoded(model, z), rtol=1e-6, atol=1e-7)


def test_reconstructions_pair_each_test_image_with_its_decoded_posterior_mean(
    tmp_path, monkeypatch
):
    figs = _capture(monkeypatch, vae)
    model = _model(3)
    x = _images(10)
    vae.reconstructions(model, x, tmp_path / "reconstructions.png", n=8)
    drawn = _tiles(figs["reconstructions"].axes[0], 4, 4, 4, 5)  # 8 pairs on 4 rows
    mu, _ = _posterior(model, x[:8])
    np.testing.assert_array_equal(drawn[0::2], x[:8, 0].numpy())
    np.testing.assert_allclose(drawn[1::2], _decoded(model, mu.float()), rtol=1e-6, atol=1e-7)


def test_traversals_sweep_the_units_with_the_most_kl_first(tmp_path, monkeypatch):
    figs = _capture(monkeypatch, vae)
    model = _model(3)
    x = _images(12, seed=1)
    vae.traversals(model, x, tmp_path / "traversals.png", dims=3, steps=5)
    mu, std = _posterior(model, x)
    kl_per_unit = torch_kl(Normal(mu, std), Normal(0.0, 1.0)).mean(0)  # (3,)
    order = np.argsort(-kl_per_unit.numpy(), kind="stable").tolist()
    ax = figs["traversals"].axes[0]
    assert f"{order}" in ax.get_title()
    drawn = _tiles(ax, 3, 5, 4, 5).reshape(3, 5, 4, 5)
    sweep = np.linspace(-3, 3, 5)
    for row, unit in enumerate(order):
        z = mu[0].repeat(5, 1)  # the first image's posterior mean, one unit swept
        z[:, unit] = torch.from_numpy(sweep)
        np.testing.assert_allclose(drawn[row], _decoded(model, z.float()), rtol=1e-6, atol=1e-7)


def test_two_dimensional_latent_map_decodes_a_grid_with_z2_growing_upwards(tmp_path, monkeypatch):
    figs = _capture(monkeypatch, vae)
    model = _model(2)
    vae.latent_map(model, _images(5), None, tmp_path / "latent_map.png", steps=4)
    drawn = _tiles(figs["latent_map"].axes[0], 4, 4, 4, 5)
    axis = np.linspace(-2.5, 2.5, 4)
    z = torch.tensor([[axis[c], axis[3 - r]] for r in range(4) for c in range(4)])
    np.testing.assert_allclose(drawn, _decoded(model, z.float()), rtol=1e-6, atol=1e-7)


def test_latent_map_projects_posterior_means_on_their_principal_axes(tmp_path, monkeypatch):
    figs = _capture(monkeypatch, vae)
    model = _model(3)
    x, labels = _images(40, seed=2), torch.arange(40) % 10
    vae.latent_map(model, x, labels, tmp_path / "latent_map.png")
    ax = figs["latent_map"].axes[0]
    (points,) = ax.collections
    drawn = np.asarray(points.get_offsets(), dtype=np.float64)
    # PCA by hand: eigenvectors of the sample covariance of the posterior means, numpy float64
    mu = _posterior(model, x)[0].numpy()
    centred = mu - mu.mean(0)
    eigval, eigvec = np.linalg.eigh(centred.T @ centred)
    top = eigvec[:, ::-1][:, :2]
    want = centred @ top
    want *= np.sign(np.sum(want * drawn, 0))  # each axis is defined up to its sign
    np.testing.assert_allclose(drawn, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(points.get_array(), labels.numpy())
    share = eigval[::-1] / eigval.sum()
    assert f"PC 1 ({share[0]:.0%} of the variance)" == ax.get_xlabel()
    assert f"PC 2 ({share[1]:.0%})" == ax.get_ylabel()


def test_curves_draw_every_logged_value_by_step(tmp_path, monkeypatch):
    figs = _capture(monkeypatch, metrics)
    train = {"elbo": [[10, -90.0], [20, -80.5], [30, -75.25]], "image_mse": [[10, 0.5], [30, 0.01]]}
    test = {"elbo": [[15, -88.0], [30, -77.0]]}
    lines = [{"step": s, "epoch": 0, f"train/{k}": v} for k, pts in train.items() for s, v in pts]
    lines += [{"step": s, "epoch": 0, f"test/{k}": v} for k, pts in test.items() for s, v in pts]
    lines.sort(key=lambda d: d["step"])
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in lines) + '{"step": 40, "train/el')  # torn
    metrics.curves(path, tmp_path / "curves.png", (("elbo", "ELBO"), ("image_mse", "MSE")))
    elbo_ax, mse_ax = figs["curves"].axes
    by_label = {line.get_label(): line.get_xydata().tolist() for line in elbo_ax.lines}
    assert by_label == {"train": train["elbo"], "test": test["elbo"]}
    assert [line.get_xydata().tolist() for line in mse_ax.lines] == [train["image_mse"]]
    assert (elbo_ax.get_yscale(), mse_ax.get_yscale()) == ("linear", "log")
    assert (elbo_ax.get_title(), mse_ax.get_title()) == ("ELBO", "MSE")


def _write_metrics(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in lines))
    return path


def test_world_model_strip_puts_imagination_under_the_truth_after_the_context(
    tmp_path, monkeypatch
):
    figs = _capture(monkeypatch, world_model)
    g = torch.Generator().manual_seed(0)
    truth, imagined = torch.rand(2, 5, 1, 3, 4, generator=g), torch.rand(2, 3, 1, 3, 4, generator=g)
    world_model.prediction_strip(truth, imagined, tmp_path / "strip.png")
    drawn = _tiles(figs["strip"].axes[0], 4, 5, 3, 4).reshape(2, 2, 5, 3, 4)  # (seq, row, step)
    for i in range(2):
        np.testing.assert_array_equal(drawn[i, 0], truth[i, :, 0].numpy())
        np.testing.assert_array_equal(drawn[i, 1, :2], np.ones((2, 3, 4)))  # the context: blank
        np.testing.assert_array_equal(drawn[i, 1, 2:], imagined[i, :, 0].numpy())


def test_kl_balance_figure_weighs_dyn_by_alpha_and_rep_by_one_minus_alpha(tmp_path, monkeypatch):
    figs = _capture(monkeypatch, world_model)
    # dyn and rep differ here (in a run they hold the same value) so a swap would show
    logged = [
        {"step": 10, "train/kl": 3.0, "train/kl/dyn": 3.0, "train/kl/rep": 2.0},
        {"step": 20, "test/kl": 2.5},
        {"step": 30, "train/kl": 0.5, "train/kl/dyn": 1.0, "train/kl/rep": 1.5},
    ]
    path = _write_metrics(tmp_path / "metrics.jsonl", logged)
    world_model.kl_balance_parts(path, tmp_path / "kl_balance.png", alpha=0.8, free_nats=1.0)
    *curves, free = figs["kl_balance"].axes[0].lines
    want = [
        ("KL(q || p), train", [[10, 3.0], [30, 0.5]]),
        ("KL(q || p), test", [[20, 2.5]]),
        ("0.8 x dyn", [[10, 0.8 * 3.0], [30, 0.8 * 1.0]]),
        ("0.2 x rep", [[10, 0.2 * 2.0], [30, 0.2 * 1.5]]),
    ]
    assert len(curves) == len(want)
    for line, (label, points) in zip(curves, want, strict=True):
        assert line.get_label().startswith(label)
        np.testing.assert_allclose(line.get_xydata(), points, rtol=1e-12)
    assert list(free.get_ydata()) == [1.0, 1.0]  # the free-nats line


def test_identity_figure_shows_the_relative_residual_of_elbo_plus_kl(tmp_path, monkeypatch):
    figs = _capture(monkeypatch, linear_gaussian)
    log_px, elbo, kl = [-10.0, -8.0, -7.5], [-12.0, -8.5, -7.5], [2.0, 0.5 + 8e-6, 0.0]
    path = _write_metrics(tmp_path / "metrics.jsonl", [
        {"step": s, "train/exact/log_px": a, "train/exact/elbo": b, "train/exact/kl_posterior": c}
        for s, a, b, c in zip((1, 2, 3), log_px, elbo, kl, strict=True)
    ])  # fmt: skip
    linear_gaussian.identity(path, tmp_path / "identity.png")
    a, b, c = figs["identity"].axes
    assert [line.get_label() for line in a.lines] == [
        "log p(x), exact", "ELBO + KL(q || p(z|x))", "ELBO"
    ]  # fmt: skip
    drawn = [line.get_ydata() for line in (*a.lines, *b.lines)]
    for got, want in zip(drawn, [log_px, [-10.0, -7.999992, -7.5], elbo, kl], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    # |ELBO + KL - log p(x)| / |log p(x)|: 0, 1e-6, 0; an exact 0 drawn at the axis floor 1e-18
    np.testing.assert_allclose(c.lines[0].get_ydata(), [1e-18, 1e-6, 1e-18], rtol=1e-9)


def test_training_ends_with_eval_and_a_self_contained_report(tmp_path, monkeypatch):
    figs = _capture(monkeypatch, vae, metrics)
    seen = {}

    def reconstructions(model, x, path, real=vae.reconstructions, **kw):
        seen.update(model=model, x=x)
        return real(model, x, path, **kw)

    monkeypatch.setattr(vae, "reconstructions", reconstructions)
    run = tmp_path / "run"
    assert train_debug(run) == 0
    result = json.loads((run / "eval.json").read_text())
    assert result["k"] == 50 and result["active_units"] <= 4
    assert set(FIGURES) <= set(figs)
    for name in FIGURES:
        image = matplotlib.image.imread(run / "report" / f"{name}.png")
        assert image.shape[0] > 100 and image[..., :3].std() > 0.02, name  # drawn, not blank
    # KL bars: the true KL per unit of the trained model on the test images, by torch; blue where
    # the posterior mean moves with x (variance over the images > 0.01)
    model, x = seen["model"], seen["x"]
    assert len(x) == result["examples"]  # the report's images are those the evaluation scored
    mu, std = _posterior(model, x)
    want_kl = torch_kl(Normal(mu, std), Normal(0.0, 1.0)).mean(0).numpy()
    bars = figs["kl_per_unit"].axes[0].patches
    assert len(bars) == 4
    np.testing.assert_allclose([b.get_height() for b in bars], want_kl, rtol=1e-5, atol=1e-6)
    active = mu.numpy().var(0, ddof=1) > 0.01
    assert [b.get_facecolor() for b in bars] == [BLUE if a else GRAY for a in active]
    assert result["active_units"] == int(active.sum())
    # curves: each panel's lines are the logged values, read here straight from the JSON lines
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for ax, key in zip(figs["curves"].axes, ("elbo", "recon", "kl"), strict=True):
        for line in ax.lines:
            k = f"{line.get_label()}/{key}"
            assert line.get_xydata().tolist() == [[d["step"], d[k]] for d in logged if k in d], k
        assert {line.get_label() for line in ax.lines} == {"train", "test"}
    # reconstructions: the first test images beside their decoded posterior means
    drawn = _tiles(figs["reconstructions"].axes[0], 4, 16, 8, 8)
    np.testing.assert_array_equal(drawn[0::2], x[:32, 0].numpy())
    np.testing.assert_allclose(drawn[1::2], _decoded(model, mu[:32].float()), rtol=1e-6, atol=1e-7)
    page = (run / "report" / "report.html").read_text()
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(embedded) == len(FIGURES)
    assert all(base64.b64decode(e)[:8] == b"\x89PNG\r\n\x1a\n" for e in embedded)
    assert 'src="http' not in page and '<img src="report' not in page  # one file, nothing linked
    assert f"{result['log_likelihood']:.2f}" in page and "active units" in page
    assert "first two principal axes" in page  # 4-D latents: the projection, not the grid


def test_two_dimensional_latents_get_a_decoded_map(tmp_path):
    run = tmp_path / "run2d"
    assert train_debug(run, "--latent-dim", "2") == 0
    assert (
        "The 2-D latent space, decoded over a grid." in (run / "report" / "report.html").read_text()
    )
    assert matplotlib.image.imread(run / "report" / "latent_map.png").shape[0] > 300


def test_report_of_a_run_without_eval_evaluates_first(tmp_path):
    run = tmp_path / "run"
    assert train_debug(run, "--eval-k", "0") == 0
    assert not (run / "eval.json").exists()
    assert main(["report", str(run), "--k", "20"]) == 0
    assert (run / "eval.json").exists() and (run / "report" / "report.html").exists()


def test_beta_sweep_trades_rate_for_distortion(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = [
        "sweep",
        "beta",
        "--preset",
        "debug",
        "--values",
        "0.25",
        "8",
        "--epochs",
        "3",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    points = {p["beta"]: p for p in json.loads((out / "sweep.json").read_text())}
    # a larger beta buys a smaller KL (rate) with a larger reconstruction NLL (distortion)
    assert points[0.25]["rate"] > points[8.0]["rate"]
    assert points[0.25]["distortion"] < points[8.0]["distortion"]
    assert matplotlib.image.imread(out / "rate_distortion.png").shape[0] > 300
    assert (out / "beta-0.25" / "state.json").exists()  # each point is an ordinary run
    assert main(["sweep", "beta", "--values", "-1", "--out", str(tmp_path / "bad")]) == 2
    assert "betas must be finite and >= 0" in capsys.readouterr().err
