"""A latent-variable model whose posterior and evidence are known exactly: probabilistic PCA.

    p(z) = N(0, I_L),   p(x | z) = N(W z + b, sigma^2 I_D)           (Tipping & Bishop 1999)
    p(x) = N(b, C),  C = W W^T + sigma^2 I_D
    p(z | x) = N(M^-1 W^T (x - b), sigma^2 M^-1),  M = W^T W + sigma^2 I_L
    I(x; z) = 0.5 log det(I_L + W^T W / sigma^2)

Its encoder is amortized and linear, q(z | x) = N(A (x - b) + c, diag(exp(s))), learnable or set
to the diagonal of the exact posterior (``set_encoder_to_posterior``). It is the ground truth that
the objectives (ELBO <= log p(x), the gap is KL(q || p(z|x)), IWAE tends to log p(x)) and the
evaluation code are tested against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Independent, MultivariateNormal, Normal

from elbokit.config import ConfigError, Section, opt
from elbokit.divergence import kl
from elbokit.latents import GaussianLatent
from elbokit.likelihoods import GaussianLikelihood
from elbokit.models.base import LatentVariableModel


class LinearGaussian(LatentVariableModel):
    """Probabilistic PCA with a linear Gaussian encoder; float64 by default (it is a reference).

    Args:
        data_dim, latent_dim: D and L.
        sigma: the observation noise standard deviation (its starting value when learned).
        learn_sigma: whether sigma is a learnable parameter (``log_sigma``) or fixed.
        ignored_dims: how many of the L latent dims get zero columns in W, so that x carries no
            information about them (for testing active-unit diagnostics).
        generator: for the random W and b.
    """

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        sigma: float = 0.5,
        *,
        learn_sigma: bool = False,
        ignored_dims: int = 0,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
    ):
        super().__init__()
        if not 0 <= ignored_dims < latent_dim:
            raise ValueError(
                f"ignored_dims={ignored_dims}; expected 0 <= ignored_dims < {latent_dim}"
            )
        w = torch.randn(data_dim, latent_dim, generator=generator, dtype=dtype)
        if ignored_dims:
            w[:, latent_dim - ignored_dims :] = 0.0
        self.W = nn.Parameter(w)
        self.b = nn.Parameter(torch.randn(data_dim, generator=generator, dtype=dtype))
        if not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma = {sigma}: expected a finite sigma > 0")
        self.log_sigma = nn.Parameter(
            torch.tensor(math.log(sigma), dtype=dtype), requires_grad=learn_sigma
        )
        self.latent = GaussianLatent(latent_dim)
        # for the decoder's mean (figures); log_likelihood uses the current sigma
        self.likelihood = GaussianLikelihood(sigma)
        self.data_shape = (data_dim,)
        self.enc_A = nn.Parameter(
            0.1 * torch.randn(latent_dim, data_dim, generator=generator, dtype=dtype)
        )
        self.enc_c = nn.Parameter(torch.zeros(latent_dim, dtype=dtype))
        self.enc_s = nn.Parameter(torch.zeros(latent_dim, dtype=dtype))

    # -------------------------------------------------------------------------------- the model
    def encode(self, x):
        mu = (x - self.b) @ self.enc_A.T + self.enc_c
        return torch.cat([mu, self.enc_s.expand_as(mu)], -1)

    def decode(self, z):
        return z @ self.W.T + self.b

    @property
    def sigma(self) -> torch.Tensor:
        return self.log_sigma.exp()

    def log_likelihood(self, z, x):
        """log N(x; W z + b, sigma^2 I) in nats, (*S, B)."""
        resid = (x - self.decode(z)) / self.sigma
        return -0.5 * resid.pow(2).sum(-1) - x.shape[-1] * (
            self.log_sigma + 0.5 * math.log(2 * math.pi)
        )

    # --------------------------------------------------------------------------- exact answers
    def _M(self) -> torch.Tensor:
        L = self.W.shape[1]
        return self.W.T @ self.W + self.sigma**2 * torch.eye(
            L, dtype=self.W.dtype, device=self.W.device
        )

    def marginal(self) -> MultivariateNormal:
        """p(x) = N(b, W W^T + sigma^2 I)."""
        D = self.W.shape[0]
        cov = self.W @ self.W.T + self.sigma**2 * torch.eye(
            D, dtype=self.W.dtype, device=self.W.device
        )
        return MultivariateNormal(self.b, covariance_matrix=cov)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """The exact log p(x) in nats, (B,)."""
        return self.marginal().log_prob(x)

    def posterior(self, x: torch.Tensor) -> MultivariateNormal:
        """The exact p(z | x), batch (B,)."""
        M = self._M()
        mean = torch.linalg.solve(M, self.W.T @ (x - self.b).T).T
        return MultivariateNormal(mean, covariance_matrix=self.sigma**2 * torch.linalg.inv(M))

    def mutual_information(self) -> torch.Tensor:
        """I(x; z) = 0.5 log det(I + W^T W / sigma^2) in nats."""
        L = self.W.shape[1]
        return 0.5 * torch.logdet(
            torch.eye(L, dtype=self.W.dtype, device=self.W.device)
            + self.W.T @ self.W / self.sigma**2
        )

    @torch.no_grad()
    def set_encoder_to_posterior(self) -> None:
        """q(z | x) := the exact posterior's mean map with its diagonal variances (no correlations)."""
        M = self._M()
        self.enc_A.copy_(torch.linalg.solve(M, self.W.T))
        self.enc_c.zero_()
        var = self.sigma**2 * torch.linalg.inv(M).diagonal()
        self.enc_s.copy_(var.log())

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws of x from the model."""
        z = torch.randn(n, self.W.shape[1], generator=generator, dtype=self.W.dtype)
        noise = torch.randn(n, self.W.shape[0], generator=generator, dtype=self.W.dtype)
        return self.decode(z) + self.sigma * noise

    def expected_log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """E_q[log p(x | z)] in closed form: the reconstruction term without sampling, (B,)."""
        params = self.encode(x)
        mu, logvar = self.latent.split(params)
        resid = x - self.decode(mu)
        trace = ((self.W**2) * logvar.exp().unsqueeze(-2)).sum((-1, -2))  # tr(W S W^T)
        D = self.W.shape[0]
        return -0.5 * ((resid**2).sum(-1) + trace) / self.sigma**2 - D * (
            self.log_sigma + 0.5 * math.log(2 * math.pi)
        )

    def posterior_kl(self, x: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x) || p(z|x)) in nats, (B,): the encoder's diagonal Gaussian against the exact
        posterior, by the divergence core's closed form for that pair."""
        mu, logvar = self.latent.split(self.encode(x))
        q = Independent(Normal(mu, (0.5 * logvar).exp()), 1)
        return kl(q, self.posterior(x))

    def exact_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Batch means in nats of the three exact quantities of log p(x) = ELBO + KL(q || p(z|x)):
        ``exact/elbo`` (closed-form expectation and KL), ``exact/log_px`` and
        ``exact/kl_posterior``, each computed on its own."""
        scale = self.W.detach().abs().max() ** 2 * self.W.shape[1] + self.sigma.detach() ** 2
        if not (torch.isfinite(scale) and all(torch.isfinite(p).all() for p in self.parameters())):
            # parameters that diverged, or a covariance W W^T + sigma^2 I that overflows: NaN
            # terms, which the trainer names with the step, rather than torch's complaint about
            # a covariance that is not positive definite
            nan = x.new_tensor(math.nan)
            return {"exact/elbo": nan, "exact/log_px": nan, "exact/kl_posterior": nan}
        elbo = self.expected_log_likelihood(x) - self.latent.kl(self.encode(x))
        return {
            "exact/elbo": elbo.mean(),
            "exact/log_px": self.log_marginal(x).mean(),
            "exact/kl_posterior": self.posterior_kl(x).mean(),
        }

    def maximum_likelihood(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """The maximum-likelihood W, b and sigma of this model's shape for data x (Tipping &
        Bishop 1999, eq. 7-8): b = mean, sigma^2 = mean of the discarded eigenvalues of the
        sample covariance, W = U_L (Lambda_L - sigma^2 I)^(1/2) (up to a rotation)."""
        L = self.W.shape[1]
        b = x.mean(0)
        cov = (x - b).T @ (x - b) / len(x)
        evals, evecs = torch.linalg.eigh(cov)
        evals, evecs = evals.flip(0), evecs.flip(1)
        if L >= len(evals):
            raise ValueError("maximum likelihood needs latent_dim < data_dim")
        s2 = evals[L:].mean()
        w = evecs[:, :L] * (evals[:L] - s2).clamp_min(0).sqrt()
        return w, b, float(s2.sqrt())


@dataclass(frozen=True)
class LinearGaussianConfig(Section):
    """A linear-Gaussian model to fit (probabilistic PCA with an amortized linear encoder)."""

    data_dim: int = opt(20, "data dimensions D, from the data", derived=True, ge=1)
    latent_dim: int = opt(4, "latent dimensions L", ge=1)
    sigma: float = opt(1.0, "observation noise sigma (its starting value when learned)", gt=0)
    learn_sigma: bool = opt(True, "learn sigma by the ELBO, or keep it fixed")

    def validate(self):
        if self.latent_dim >= self.data_dim:
            raise ConfigError(
                f"latent_dim = {self.latent_dim}: expected fewer than the data's {self.data_dim} "
                "dimensions"
            )

    def build(self, generator: torch.Generator | None = None) -> LinearGaussian:
        return LinearGaussian(
            self.data_dim, self.latent_dim, self.sigma, learn_sigma=self.learn_sigma,
            generator=generator,
        )  # fmt: skip
