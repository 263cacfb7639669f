"""The baselines Auto-Encoding Variational Bayes is measured against: the wake-sleep algorithm
(Hinton et al., 1995) and Monte-Carlo EM with a Hamiltonian Monte Carlo E-step (Duane et al.,
1987; Neal, 2011). Both work on the same VAE networks: ``model.decoder`` is the generative model,
``model.encoder`` (wake-sleep only) the recognition model. ``WakeSleepStep`` and ``MCEMStep`` run
them as steps of the one trainer (``vaekit.fit(..., step=WakeSleepStep)``).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch

from .errors import VaekitError
from . import steps
from .trainstate import entry, load_optimizer

LogDensity = Callable[[torch.Tensor], torch.Tensor]  # z (B, k) -> log density up to a constant (B,)


def _value_and_grad(log_prob: LogDensity, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        lp = log_prob(z)
        (g,) = torch.autograd.grad(lp.sum(), z)
    return lp.detach(), g


def hmc_step(z: torch.Tensor, log_prob: LogDensity, step_size: float, n_leapfrog: int,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One HMC transition per row of z: fresh momentum, ``n_leapfrog`` leapfrog steps, a Metropolis
    test on the Hamiltonian. It leaves the density ``log_prob`` invariant. Returns (z', accepted (B,))."""
    p0 = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
    lp0, g = _value_and_grad(log_prob, z)
    zz, p = z.detach(), p0 + 0.5 * step_size * g
    for i in range(n_leapfrog):
        zz = zz + step_size * p
        lp, g = _value_and_grad(log_prob, zz)
        if i < n_leapfrog - 1:
            p = p + step_size * g
    p = p + 0.5 * step_size * g
    log_accept = (lp - 0.5 * p.pow(2).sum(-1)) - (lp0 - 0.5 * p0.pow(2).sum(-1))
    u = torch.rand(log_accept.shape, generator=generator, device=z.device)
    accepted = torch.isfinite(log_accept) & (u.log() < log_accept)
    return torch.where(accepted[:, None], zz, z.detach()), accepted


def log_joint(model, x: torch.Tensor) -> LogDensity:
    """z -> log p(x, z) = log p(x|z) + log p(z) under the model's decoder and prior, for fixed x."""
    return lambda z: model.decode(z).log_prob(x) + model.prior.log_prob(z)


def mcem_step(model, x: torch.Tensor, z: torch.Tensor, optimizer: torch.optim.Optimizer, step_size: float = 0.1,
              n_leapfrog: int = 10, n_hmc: int = 1, n_updates: int = 5,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, float]:
    """Monte-Carlo EM as in Kingma & Welling's comparison (appendix E: 10 leapfrog steps, then 5 weight
    updates with the sample): an E-step of ``n_hmc`` HMC transitions of each data point's z under p(z|x)
    (warm-started from the last ``z``), then ``n_updates`` gradient M-steps on the decoder's parameters of
    the mean log p(x, z) at that z. Returns the new z and the E-step's acceptance rate."""
    accepted = 0.0
    for _ in range(n_hmc):
        z, acc = hmc_step(z, log_joint(model, x), step_size, n_leapfrog, generator)
        accepted += acc.float().mean().item()
    z = z.detach()
    for _ in range(n_updates):
        optimizer.zero_grad(set_to_none=True)
        (-log_joint(model, x)(z).mean()).backward()
        optimizer.step()
    return z, accepted / n_hmc


def tuned_step_size(step_size: float, acceptance: float, target: float = 0.9, gain: float = 0.05) -> float:
    """The HMC step size after one more observed acceptance rate, nudged in log space towards the rate
    ``target`` (the paper tunes Monte-Carlo EM's step "such that the acceptance rate was 90%"): larger
    steps when more is accepted than wanted, smaller when less."""
    return step_size * math.exp(gain * (acceptance - target))


def wake_sleep_step(model, x: torch.Tensor, wake_optimizer: torch.optim.Optimizer, sleep_optimizer: torch.optim.Optimizer,
                    generator: torch.Generator | None = None) -> dict[str, float]:
    """One step of wake-sleep. Wake: z ~ q(z|x) held fixed, the decoder climbs log p(x, z). Sleep: a
    dream (z, x) ~ p(z) p(x|z) the size of the batch, the encoder climbs log q(z|x) of it."""
    with torch.no_grad():
        z = model.encode(x).rsample(generator=generator)
    wake_optimizer.zero_grad(set_to_none=True)
    wake = -log_joint(model, x)(z).mean()
    if not torch.isfinite(wake):  # the decoder has diverged: no dream can be drawn from it
        raise VaekitError(f"wake-sleep diverged: the wake phase's loss is {wake.item()}; try a smaller step size")
    wake.backward()
    wake_optimizer.step()
    with torch.no_grad():
        z_dream = model.draw_prior(len(x), generator)
        x_dream = model.decode(z_dream).sample(generator)
    sleep_optimizer.zero_grad(set_to_none=True)
    sleep = -model.encode(x_dream).log_prob(z_dream).mean()
    sleep.backward()
    sleep_optimizer.step()
    return {"wake": wake.item(), "sleep": sleep.item()}


class WakeSleepStep:
    """Wake-sleep as a trainer step: the decoder's and the encoder's own optimizers (``train.optimizer`` at
    ``train.lr``), one ``wake_sleep_step`` per minibatch. The loss it records is the wake phase's −log p(x, z)."""

    def __init__(self, trainer):
        model, tc = trainer.model, trainer.tc
        self.model = model
        self.wake, self.sleep = steps.make_optimizer(model.decoder.parameters(), tc), steps.make_optimizer(model.encoder.parameters(), tc)
        self.optimizers = [self.wake, self.sleep]

    def __call__(self, x, y, kl_weight, generator, weight):
        wake = wake_sleep_step(self.model, x, self.wake, self.sleep, generator)["wake"]
        return torch.tensor([wake, wake, 0.0], device=x.device)

    def state_dict(self) -> dict[str, Any]:
        """Both optimizers' states, for the trainer's checkpoint."""
        return {"wake": self.wake.state_dict(), "sleep": self.sleep.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Both optimizers' states back from a checkpoint."""
        load_optimizer(self.wake, entry(state, "wake"), "the wake phase's optimizer")
        load_optimizer(self.sleep, entry(state, "sleep"), "the sleep phase's optimizer")


class MCEMStep:
    """Monte-Carlo EM as a trainer step: an HMC chain state z per training point, carried from visit to visit,
    its step size tuned towards 90 % acceptance, and ``mcem_step``'s 5 decoder updates per minibatch. The
    training data's labels ``y`` must be the rows' indices (train on the pair (x, arange(N))). The loss it
    records is −log p(x, z) at the chain's new z."""

    def __init__(self, trainer):
        model, tc = trainer.model, trainer.tc
        self.model, self.opt = model, steps.make_optimizer(model.decoder.parameters(), tc)
        self.optimizers = [self.opt]
        self.z = torch.zeros(len(trainer.dataset.train), model.latent_dim, device=trainer.device)
        self.step_size, self.accepted, self.steps = 0.1, 0.0, 0

    @property
    def acceptance(self) -> float:
        """The mean acceptance rate of the E-steps so far."""
        return self.accepted / max(1, self.steps)

    def __call__(self, x, y, kl_weight, generator, weight):
        if y is None or y.dim() != 1 or y.is_floating_point():
            raise VaekitError("MCEMStep needs the rows' indices as the training labels: fit(model, (x, torch.arange(len(x))), ...)")
        self.z[y], rate = mcem_step(self.model, x, self.z[y], self.opt, step_size=self.step_size, generator=generator)
        self.step_size, self.accepted, self.steps = tuned_step_size(self.step_size, rate), self.accepted + rate, self.steps + 1
        with torch.no_grad():
            loss = -log_joint(self.model, x)(self.z[y]).mean()
        return torch.stack([loss, loss, torch.zeros_like(loss)])

    def state_dict(self) -> dict[str, Any]:
        """The decoder's optimizer, every chain's z and the E-step's tuning, for the trainer's checkpoint."""
        return {"optimizer": self.opt.state_dict(), "z": self.z.cpu(), "step_size": self.step_size, "accepted": self.accepted,
                "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The optimizer, the chains and the E-step's tuning back from a checkpoint."""
        load_optimizer(self.opt, entry(state, "optimizer"))
        z = entry(state, "z")
        if not isinstance(z, torch.Tensor) or z.shape != self.z.shape or z.dtype != self.z.dtype:
            raise VaekitError(f"the chains' z: expected a {self.z.dtype} tensor of shape {tuple(self.z.shape)}, one row per training point")
        numbers = [entry(state, k) for k in ("step_size", "accepted", "steps")]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers):
            raise VaekitError(f"the E-step's tuning: expected numbers, got {numbers!r}")
        self.z = z.to(self.z.device)
        self.step_size, self.accepted, self.steps = numbers


@torch.no_grad()
def hmc_log_likelihood(model, x: torch.Tensor, k: int = 1000, hmc_steps: int = 60, step_size: float = 0.05, n_leapfrog: int = 10,
                       chains: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """log p(x) per example for any decoder, no encoder needed, so AEVB, wake-sleep and Monte-Carlo EM are
    measured on one footing. ``chains`` HMC chains per example start from prior draws (each with its step size
    tuned towards 80 % acceptance in the first half); each chain's second half fits a full-covariance Gaussian,
    widened 1.5×, and their equal mixture is the importance-sampling proposal r of
    log (1/K) Σ p(x|z_k) p(z_k) / r(z_k). Several chains find several modes, the full covariance follows
    correlated posteriors: one chain from z = 0 with a diagonal fit fell 4.2 nats short on an AEVB MNIST model."""
    b, d = len(x), model.latent_dim
    xs = x.repeat(chains, *([1] * (x.dim() - 1)))  # (C·B, ...): chain c of example i is row c·B + i
    z = torch.randn((chains * b, d), generator=generator, device=x.device)
    eps = torch.full((chains * b, 1), step_size, device=x.device)
    kept = []
    for step in range(hmc_steps):
        z, accepted = hmc_step(z, log_joint(model, xs), eps, n_leapfrog, generator)
        if step < hmc_steps // 2:
            eps = eps * torch.exp(0.2 * (accepted.float()[:, None] - 0.8))
        else:
            kept.append(z)
    draws = torch.stack(kept).view(len(kept), chains, b, d)
    mu = draws.mean(0)
    centred = draws - mu
    cov = torch.einsum("scbi,scbj->cbij", centred, centred) / max(len(kept) - 1, 1)
    cov = 1.5**2 * cov + 1e-6 * torch.eye(d, device=x.device)
    proposal = torch.distributions.MultivariateNormal(mu, scale_tril=torch.linalg.cholesky(cov))  # batch (C, B)
    log_w = torch.empty(k, b, device=x.device)
    per_chunk = max(1, 2**25 // max(1, b * x[0].numel()))  # decoder outputs of at most ~32M numbers at a time
    for start in range(0, k, per_chunk):
        n = min(per_chunk, k - start)
        which = torch.randint(chains, (n, b), generator=generator, device=x.device)
        eps_z = torch.randn((n, b, d), generator=generator, device=x.device)
        zs = (mu.transpose(0, 1)[torch.arange(b), which] +  # (n, B, d): a draw from a uniformly chosen chain's Gaussian
              (proposal.scale_tril.transpose(0, 1)[torch.arange(b), which] @ eps_z[..., None])[..., 0])
        log_r = torch.logsumexp(proposal.log_prob(zs[:, None]), 1) - math.log(chains)  # (n, B)
        log_w[start:start + n] = model.decode(zs).log_prob(x) + model.prior.log_prob(zs) - log_r
    return torch.logsumexp(log_w, 0) - math.log(k)
