"""Posteriors q(z|x) built from the encoder's output: the diagonal Gaussian, and normalizing flows on top of it
(planar flows, Rezende & Mohamed 2015; inverse autoregressive flow, Kingma et al. 2016).

A posterior is an ``nn.Module`` registered as a ``posterior``: ``n_inputs`` says how many numbers per example the
encoder must give, and calling it on them gives the distribution. A flow's encoder gives μ, log σ² and a context
h of ``latent_dim`` numbers; its steps are conditioned on h, so the flow is amortized over x as in both papers.
"""
from __future__ import annotations

import torch
import torch.distributions as td
import torch.nn.functional as F
from torch import nn

from ..errors import VaekitError
from ..registry import register
from .latent import DiagonalGaussian


@register("posterior", "gaussian")
class GaussianPosterior(nn.Module):
    """q(z|x) = N(μ(x), diag σ²(x)): the encoder gives (μ, log σ²)."""

    config_keys: frozenset[str] = frozenset()
    density_anywhere = True  # log q(z|x) at any z, not only at the posterior's own draws
    reads = "μ and log σ² of each unit"

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim, self.n_inputs = latent_dim, 2 * latent_dim

    def forward(self, out: torch.Tensor) -> DiagonalGaussian:
        mu, log_var = out.chunk(2, dim=-1)
        return DiagonalGaussian(mu, log_var)


class FlowPosterior(td.Distribution):
    """A diagonal Gaussian base pushed through invertible steps, z_T = f_T ∘ … ∘ f_1(z_0):
    log q(z_T|x) = log q_0(z_0|x) − Σ_t log |det ∂f_t/∂z_{t−1}|.

    The steps are not inverted, so the density is known at the posterior's own draws: ``log_prob`` takes the
    tensor the last ``rsample`` or ``sample`` returned (which is how every objective and ``vaekit eval`` use it).
    """

    arg_constraints: dict = {}
    support = td.constraints.real_vector
    has_rsample = True

    def __init__(self, base: DiagonalGaussian, steps: nn.ModuleList, context: torch.Tensor):
        self.base, self.steps, self.context = base, steps, context
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    def push(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(f(z), Σ_t log |det ∂f_t|) for base points z (*sample, *batch, D)."""
        log_det = torch.zeros(z.shape[:-1], device=z.device, dtype=z.dtype)
        for t, step in enumerate(self.steps):
            z, ld = step(z.flip(-1) if t else z, self.context)  # reversed order between steps: every unit sees every other
            log_det = log_det + ld
        return z, log_det

    def rsample(self, sample_shape=torch.Size(), generator: torch.Generator | None = None) -> torch.Tensor:
        z0 = self.base.rsample(sample_shape, generator)
        z, log_det = self.push(z0)
        self._last = (z, self.base.log_prob(z0) - log_det)
        return z

    def sample(self, sample_shape=torch.Size(), generator: torch.Generator | None = None) -> torch.Tensor:
        with torch.no_grad():
            z = self.rsample(sample_shape, generator)
        return z

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        if self._last is None or z is not self._last[0]:
            raise VaekitError("a flow posterior's log q(z|x) is known at its own draws only (the steps are not inverted): "
                              "pass the tensor its last rsample gave; estimators that need it elsewhere (dreg, "
                              "score-function) take model.posterior=gaussian")
        return self._last[1]

    def detach(self):
        raise VaekitError("model.estimator='dreg' needs log q(z|x) at any z, which a flow posterior does not give; "
                          "use the reparameterization estimator or model.posterior=gaussian")

    @property
    def mean(self) -> torch.Tensor:
        """The base's mean pushed through the flow: the code the explore commands and features use (the flow's own
        mean has no closed form)."""
        return self.push(self.base.mean)[0]

    @property
    def stddev(self) -> torch.Tensor:
        """The base Gaussian's σ (the flow's spread has no closed form)."""
        return self.base.stddev


class _Flow(nn.Module):
    """A posterior of ``flow_steps`` steps over a diagonal Gaussian; the encoder gives (μ, log σ², h)."""

    config_keys = frozenset({"flow_steps"})
    density_anywhere = False
    reads = "μ, log σ² and a context number per unit"

    def __init__(self, latent_dim: int, flow_steps: int = 4):
        super().__init__()
        if not isinstance(flow_steps, int) or isinstance(flow_steps, bool) or flow_steps < 1:
            raise VaekitError(f"model.flow_steps={flow_steps!r}: expected a positive integer")
        self.latent_dim, self.flow_steps, self.n_inputs = latent_dim, flow_steps, 3 * latent_dim
        self.steps = nn.ModuleList(self.step(latent_dim) for _ in range(flow_steps))

    def step(self, d: int) -> nn.Module:
        raise NotImplementedError

    def forward(self, out: torch.Tensor) -> FlowPosterior:
        mu, log_var, h = out.split(self.latent_dim, dim=-1)
        return FlowPosterior(DiagonalGaussian(mu, log_var), self.steps, h)


class PlanarStep(nn.Module):
    """f(z) = z + û tanh(wᵀz + b), with (u, w, b) read from the context h; û = u + (m(wᵀu) − wᵀu) w/‖w‖²,
    m(a) = −1 + softplus(a), keeps wᵀû ≥ −1 so f is invertible (Rezende & Mohamed, 2015, appendix A).
    log |det ∂f/∂z| = log |1 + ûᵀ (1 − tanh²(wᵀz + b)) w|."""

    def __init__(self, d: int):
        super().__init__()
        self.d = d
        self.params = nn.Linear(d, 2 * d + 1)

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u, w, b = self.params(h).split((self.d, self.d, 1), dim=-1)
        wu = (w * u).sum(-1, keepdim=True)
        u = u + (F.softplus(wu) - 1 - wu) * w / w.pow(2).sum(-1, keepdim=True).clamp(min=1e-12)
        a = torch.tanh((w * z).sum(-1, keepdim=True) + b)
        log_det = torch.log((1 + (1 - a.pow(2)) * (w * u).sum(-1, keepdim=True)).abs() + 1e-12)
        return z + u * a, log_det.squeeze(-1)


class MaskedLinear(nn.Linear):
    """A linear layer whose weights are masked so output i sees only the inputs its mask allows (MADE)."""

    def __init__(self, n_in: int, n_out: int, mask: torch.Tensor):
        super().__init__(n_in, n_out)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class IAFStep(nn.Module):
    """One inverse autoregressive flow step (Kingma et al., 2016, section 4): [m, s] = MADE(z, h),
    σ = sigmoid(s), z' = σ ⊙ z + (1 − σ) ⊙ m, log |det| = Σ log σ. m_i and s_i depend on z_{<i} only, so the
    Jacobian is triangular. The bias of s starts at +1.5 so σ starts near 0.8 and the step near the identity,
    as the paper advises."""

    def __init__(self, d: int):
        super().__init__()
        hidden = 4 * d
        degree_in = torch.arange(1, d + 1)
        degree_hidden = torch.arange(hidden) % max(d - 1, 1) + 1
        self.inner = MaskedLinear(d, hidden, (degree_hidden[:, None] >= degree_in[None, :]))
        self.context = nn.Linear(d, hidden, bias=False)
        out_mask = (degree_in[:, None] > degree_hidden[None, :])
        self.m = MaskedLinear(hidden, d, out_mask)
        self.s = MaskedLinear(hidden, d, out_mask)
        with torch.no_grad():
            self.s.bias.fill_(1.5)

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = F.elu(self.inner(z) + self.context(h))
        m, s = self.m(hidden), self.s(hidden)
        gate = torch.sigmoid(s)
        return gate * z + (1 - gate) * m, F.logsigmoid(s).sum(-1)


@register("posterior", "planar")
class PlanarFlow(_Flow):
    """q(z|x): a diagonal Gaussian through ``flow_steps`` planar steps whose parameters the encoder's context gives."""

    def step(self, d: int) -> nn.Module:
        return PlanarStep(d)


@register("posterior", "iaf")
class IAF(_Flow):
    """q(z|x): a diagonal Gaussian through ``flow_steps`` inverse autoregressive steps conditioned on the context."""

    def step(self, d: int) -> nn.Module:
        return IAFStep(d)
