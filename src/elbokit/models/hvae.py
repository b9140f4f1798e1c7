"""A hierarchical VAE: L Gaussian latent layers, z_1 nearest the data, z_L at the top.

    p(x, z) = p(z_L) p(z_{L-1} | z_L) ... p(z_1 | z_2) p(x | z_1),   p(z_L) = N(0, I),
    p(z_l | z_{l+1}) = N(mu_l(z_{l+1}), diag sigma_l^2(z_{l+1}))

Inference (``VAEConfig.inference``):

    bottom-up  q(z_1 | x) q(z_2 | z_1) ... q(z_L | z_{L-1}) (Burda et al.'s IWAE models). z_{l+1}
               is drawn after z_l, so the KL of a lower layer against p(z_l | z_{l+1}) has no
               closed form: those terms are the one-sample log q - log p ("sampled"); the top
               layer's KL to N(0, I) is analytic.
    top-down   the Ladder VAE (Sønderby et al. 2016): a deterministic bottom-up pass gives each
               layer a Gaussian "likelihood" N(m_l, v_l); q is then built top down, sharing the
               generative path: q(z_L | x) = N(m_L, v_L), and for l < L the precision-weighted
               product of N(m_l, v_l) and p(z_l | z_{l+1}) at the drawn z_{l+1}. Given z_{l+1}
               both are Gaussians of the same variable, so every layer's KL is analytic.

ELBO = E_q[log p(x | z_1)] - sum_l KL_l, KL_l = E_q[log q(z_l | .) - log p(z_l | z_{l+1})]
(one term per layer, per unit). ``log_weights`` gives log p(x, z) - log q(z | x) for k draws
(importance-sampled log p(x), IWAE). ``llr_bound(x, k)``: Havtorn et al.'s (2021) L^{>k}, the
bound with z_{>k} from q and the k lowest layers drawn from the conditional prior p(z_{<=k} |
z_{k+1}) instead, so the low-level latents cannot explain the image; LLR^{>k} = ELBO - L^{>k} is
their out-of-distribution score.

``arch="conv"`` (top-down only): the lower layers are feature maps, z_l of latent_dims[l]
channels at 1/2^l of the image's height and width (z_1 at 14x14 for 28x28 images), the top one
a vector; convolutions between them (``channels[l]`` wide at each resolution), so each pixel's
likelihood depends on a neighbourhood of z_1 only: the lowest layer holds local, low-level
features and the layers above the image's content, the split Havtorn et al.'s LLR^{>k} needs.
Inside the model every layer is flat (B, c h w), as the MLP hierarchy's vectors.

``encode`` gives q(z_L | x)'s [mu, logvar] (the mean path through the lower layers, for
bottom-up) and ``decode`` goes from z_L to the likelihood's parameters through the conditional
priors' means, so the VAE's figures (samples, reconstructions, traversals) show the top layer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from elbokit.latents import make_latent
from elbokit.likelihoods import make_likelihood
from elbokit.models.base import LatentVariableModel
from elbokit.nets import MLP, activation_layer

__all__ = ["HierarchicalVAE", "gaussian_kl"]

LOG_2PI = math.log(2 * math.pi)


def gaussian_kl(mu_q, logvar_q, mu_p, logvar_p) -> torch.Tensor:
    """KL(N(mu_q, e^logvar_q) || N(mu_p, e^logvar_p)) per unit."""
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1)


def _log_normal(z, mu, logvar) -> torch.Tensor:
    """log N(z; mu, e^logvar) per unit."""
    return -0.5 * (LOG_2PI + logvar + (z - mu) ** 2 * torch.exp(-logvar))


def _split(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu, logvar = params.chunk(2, -1)
    return mu, logvar.clamp(-30.0, 20.0)


class _Flat(nn.Module):
    """A convolutional net whose output is flat, (..., c h w): its input flat too, (..., shape_in
    flattened), or maps (B, c, h, w) where ``shape_in`` is None; with ``gaussian``, the output's
    channels split into [mu, logvar] halves, each flattened, mu's first."""

    def __init__(self, net: nn.Module, shape_in=None, gaussian: bool = False):
        super().__init__()
        self.net, self.shape_in, self.gaussian = net, shape_in, gaussian

    def forward(self, z):
        if self.shape_in is None:
            lead = z.shape[:1]
        else:
            lead, z = z.shape[:-1], z.reshape(-1, *self.shape_in)
        h = self.net(z)
        if self.gaussian:
            h = torch.cat([part.flatten(1) for part in h.chunk(2, 1)], 1)
        return h.reshape(*lead, -1)


def _up2(c_in: int, c_out: int, act, out_channels: int) -> nn.Sequential:
    """c_in maps -> twice the size -> out_channels maps (3x3, 4x4 transposed stride 2, 3x3)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), act(),
                         nn.ConvTranspose2d(c_out, c_out, 4, stride=2, padding=1), act(),
                         nn.Conv2d(c_out, out_channels, 3, padding=1))  # fmt: skip


class HierarchicalVAE(LatentVariableModel):
    """L >= 2 Gaussian latent layers of ``config.dims()`` (bottom to top), MLPs of
    ``config.hidden`` between the image and z_1 and of one ``hidden[-1]`` layer between latents
    (or, with ``arch="conv"``, feature maps and convolutions: see the module docstring)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.data_shape = tuple(config.data_shape)
        self.top_down = config.inference == "top-down"
        self.likelihood = make_likelihood(config.likelihood)
        self.param_shape = self.likelihood.param_shape(self.data_shape)
        if config.arch == "conv":
            self._build_conv(config)
            return
        self.dims = config.dims()
        self.shapes = [(d,) for d in self.dims]
        self.latent = make_latent("gaussian", dim=self.dims[-1])  # the top layer's family
        d_in, width, act = math.prod(self.data_shape), config.hidden[-1], config.activation
        self.decoder = MLP(self.dims[0], config.hidden[::-1], math.prod(self.param_shape), act)
        # p(z_l | z_{i+1}) for i = 1 .. L-1
        self.priors = nn.ModuleList(
            MLP(self.dims[i + 1], (width,), 2 * self.dims[i], act) for i in range(len(self.dims) - 1)
        )  # fmt: skip
        if self.top_down:  # deterministic features d_l, each with a Gaussian head
            self.up = nn.ModuleList(
                [MLP(d_in, config.hidden[:-1], width, act)]
                + [MLP(width, (width,), width, act) for _ in self.dims[1:]]
            )  # fmt: skip
            self.heads = nn.ModuleList(nn.Linear(width, 2 * d) for d in self.dims)
        else:  # q(z_1 | x), q(z_l | z_{l-1})
            self.up = nn.ModuleList(
                [MLP(d_in, config.hidden, 2 * self.dims[0], act)]
                + [MLP(self.dims[i - 1], (width,), 2 * self.dims[i], act) for i in range(1, len(self.dims))]
            )  # fmt: skip

    def _build_conv(self, config) -> None:
        """Feature-map layers z_1 .. z_{L-1} (latent_dims[l] channels at 1/2^l scale), a vector
        z_L; the deterministic bottom-up path and each top-down prior convolutional."""
        c, h, w = self.data_shape
        L, act = config.layers, activation_layer(config.activation)
        chans = config.dims()
        sizes = [(h // 2**i, w // 2**i) for i in range(1, L)]
        if h % 2 ** (L - 1) or w % 2 ** (L - 1) or min(sizes[-1]) < 2:
            raise ValueError(f"images of {h}x{w} cannot be halved {L - 1} times exactly into "
                             f"feature maps of 2x2 or more (layers = {L}); use fewer layers")  # fmt: skip
        self.shapes = [(chans[i], *sizes[i]) for i in range(L - 1)] + [(chans[-1],)]
        self.dims = tuple(math.prod(s) for s in self.shapes)
        self.latent = make_latent("gaussian", dim=self.dims[-1])
        width = list(config.channels) + [config.channels[-1]] * L  # per resolution
        top = config.hidden[-1]
        # bottom-up: d_l at the l-th resolution (the top: a vector); heads give q's Gaussians
        up = [nn.Sequential(nn.Conv2d(c, width[0], 4, stride=2, padding=1), act(),
                            nn.Conv2d(width[0], width[0], 3, padding=1))]  # fmt: skip
        for i in range(1, L - 1):
            up.append(nn.Sequential(nn.Conv2d(width[i - 1], width[i], 4, stride=2, padding=1),
                                    act(), nn.Conv2d(width[i], width[i], 3, padding=1)))  # fmt: skip
        up.append(nn.Sequential(nn.Flatten(1), nn.Linear(width[L - 2] * math.prod(sizes[-1]), top)))
        self.up = nn.ModuleList(up)
        heads = [_Flat(nn.Conv2d(width[i], 2 * chans[i], 3, padding=1), None, True)
                 for i in range(L - 1)]  # fmt: skip
        self.heads = nn.ModuleList([*heads, nn.Linear(top, 2 * chans[-1])])
        # top-down priors p(z_l | z_{l+1}): the vector to the smallest map, then up by 2 each
        ch, hh, ww = self.shapes[-2]
        priors = [None] * (L - 1)
        priors[L - 2] = _Flat(
            nn.Sequential(nn.Linear(chans[-1], top), act(),
                          nn.Linear(top, width[L - 2] * hh * ww), act(),
                          nn.Unflatten(1, (width[L - 2], hh, ww)),
                          nn.Conv2d(width[L - 2], 2 * ch, 3, padding=1)),
            (chans[-1],), True,
        )  # fmt: skip
        for i in range(L - 2):
            priors[i] = _Flat(
                _up2(chans[i + 1], width[i], act, 2 * chans[i]), self.shapes[i + 1], True
            )
        self.priors = nn.ModuleList(priors)
        p = math.prod(self.param_shape) // (h * w)
        self.decoder = _Flat(_up2(chans[0], width[0], act, p), self.shapes[0])

    def describe(self) -> str:
        """The layers bottom to top, e.g. "4x14x14, 4x7x7, 32 (conv)"."""
        shapes = ", ".join("x".join(map(str, s)) for s in self.shapes)
        return f"{shapes} ({self.config.arch})"

    # ------------------------------------------------------------------ paths
    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(f"the model expects images of shape {self.data_shape}, got a batch "
                             f"of shape {tuple(x.shape)}")  # fmt: skip
        if self.likelihood.name == "categorical":
            x = x / (self.likelihood.num_classes - 1)
        return x.flatten(1).to(torch.promote_types(x.dtype, torch.float32))

    def _bottom_up(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Top-down inference: the (m_l, logvar_l) of every layer's bottom-up Gaussian."""
        h, out = self._flat(x), []
        if self.config.arch == "conv":
            h = h.view(len(x), *self.data_shape)
        for up, head in zip(self.up, self.heads, strict=True):
            h = F.elu(up(h))
            out.append(_split(head(h)))
        return out

    def _prior(self, i: int, z_above: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of p(z_l | z_{l+1}) for the layer index i = l - 1 (0: z_1)."""
        return _split(self.priors[i](z_above))

    def _draw(self, x: torch.Tensor, k: int, generator, prior_below: int = 0):
        """One pass of k draws per example: per layer (z, log q, log p) summed over units (k, B),
        and the KL terms per unit (k, B, d_l) (analytic where available, else log q - log p at
        the draw), with z_1 .. z_{prior_below} drawn from the conditional prior instead of q
        (those layers then contribute no log q - log p: ``llr_bound``)."""

        def eps(like):
            return torch.randn(
                like.shape, generator=generator, device=like.device, dtype=like.dtype
            )

        L = len(self.dims)
        zs: list = [None] * L
        kl_units: list = [None] * L
        log_q: list = [None] * L
        log_p: list = [None] * L
        if self.top_down:
            feats = [(m.expand(k, *m.shape), v.expand(k, *v.shape)) for m, v in self._bottom_up(x)]
            for i in reversed(range(L)):
                m, v = feats[i]
                if i == L - 1:
                    pm, pv = torch.zeros_like(m), torch.zeros_like(v)
                    qm, qv = m, v
                else:
                    pm, pv = self._prior(i, zs[i + 1])
                    prec_q, prec_p = torch.exp(-v), torch.exp(-pv)
                    qv = -torch.log(prec_q + prec_p)
                    qm = (m * prec_q + pm * prec_p) * qv.exp()
                if i < prior_below:
                    zs[i] = pm + (0.5 * pv).exp() * eps(pm)
                    continue
                zs[i] = qm + (0.5 * qv).exp() * eps(qm)
                kl_units[i] = gaussian_kl(qm, qv, pm, pv)
                log_q[i] = _log_normal(zs[i], qm, qv).sum(-1)
                log_p[i] = _log_normal(zs[i], pm, pv).sum(-1)
        else:
            h = self._flat(x).expand(k, *x.flatten(1).shape)
            qs = []
            for i in range(L):  # z_l ~ q(z_l | z_{l-1}) up the chain
                qm, qv = _split(self.up[i](h))
                zs[i] = qm + (0.5 * qv).exp() * eps(qm)
                qs.append((qm, qv))
                h = zs[i]
            for i in reversed(range(L)):
                if i == L - 1:
                    pm, pv = torch.zeros_like(zs[i]), torch.zeros_like(zs[i])
                else:
                    pm, pv = self._prior(i, zs[i + 1])
                if i < prior_below:
                    zs[i] = pm + (0.5 * pv).exp() * eps(pm)
                    continue
                qm, qv = qs[i]
                log_q[i] = _log_normal(zs[i], qm, qv).sum(-1)
                log_p[i] = _log_normal(zs[i], pm, pv).sum(-1)
                if i == L - 1:
                    kl_units[i] = gaussian_kl(qm, qv, pm, pv)
                else:  # z_{l+1} was drawn given z_l: no closed form, the draw's log q - log p
                    kl_units[i] = _log_normal(zs[i], qm, qv) - _log_normal(zs[i], pm, pv)
        return zs, kl_units, log_q, log_p

    # ------------------------------------------------------------------ the interface
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """q(z_L | x)'s [mu, logvar] (B, 2 d_L); bottom-up: along the means of the chain."""
        if self.top_down:
            m, v = self._bottom_up(x)[-1]
            return torch.cat([m, v], -1)
        h = self._flat(x)
        for up in self.up:
            params = up(h)
            h = _split(params)[0]
        return params

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z_L (*S, B, d_L) -> p(x | z_1)'s parameters, z_1 .. z_{L-1} the conditional priors'
        means."""
        for i in reversed(range(len(self.dims) - 1)):
            z = self._prior(i, z)[0]
        return self.decode_bottom(z)

    def decode_bottom(self, z1: torch.Tensor) -> torch.Tensor:
        lead = z1.shape[:-1]
        out = self.decoder(z1.reshape(-1, z1.shape[-1]))
        out = out.to(torch.promote_types(out.dtype, torch.float32))  # bf16 autocast: fp32 sums
        return out.reshape(*lead, *self.param_shape)

    def elbo_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, str]:
        """One draw: log p(x | z_1) (B,), the KL per unit of every layer, bottom to top,
        (B, sum d_l), and "analytic" or "sampled" (some layer's KL was a draw's)."""
        zs, kl_units, _, _ = self._draw(x, 1, None)
        recon = self.likelihood.log_prob(self.decode_bottom(zs[0][0]), x)
        method = "analytic" if self.top_down else "sampled"
        return recon, torch.cat([u[0] for u in kl_units], -1), method

    def layer_kl(self, x: torch.Tensor) -> list[torch.Tensor]:
        """KL_l per unit (B, d_l) of each layer, bottom to top (one draw)."""
        return [u[0] for u in self._draw(x, 1, None)[1]]

    def log_weights(self, x: torch.Tensor, k: int, generator=None, prior_below: int = 0):
        """log p(x, z) - log q(z | x) for k draws per example (k, B); with ``prior_below`` = j
        the j lowest layers drawn from the conditional prior (Havtorn's L^{>j})."""
        zs, _, log_q, log_p = self._draw(x, k, generator, prior_below)
        lw = self.likelihood.log_prob(self.decode_bottom(zs[0]), x)
        for i in range(prior_below, len(self.dims)):
            lw = lw + log_p[i] - log_q[i]
        return lw

    def sample(self, n: int, generator=None) -> torch.Tensor:
        """Ancestral samples' likelihood parameters: z_L ~ N(0, I), each z_l ~ p(z_l | z_{l+1})."""
        z = self.latent.sample_prior(n, generator=generator)
        for i in reversed(range(len(self.dims) - 1)):
            m, v = self._prior(i, z)
            z = m + (0.5 * v).exp() * torch.randn(m.shape, generator=generator)
        return self.decode_bottom(z)
