"""The training step of the MLP VAE with a Bernoulli decoder, derived by hand: forward and backward without autograd.

This is the model most people train first (pytorch/examples' 784-400-20 VAE, the AEVB
paper's MNIST models), and its useful work is a handful of matmuls. Under autograd a
step also pays per-op dispatch and graph bookkeeping, a fresh, first-touched
temporary for every intermediate, and elementwise passes that could be merged. This
step does the same arithmetic (it draws the same ε from the same generator as
``VAE.loss``, so the two agree to rounding) with every intermediate in buffers kept
from step to step, the 1/B and KL weights folded into the matmuls' α, the loss
reduced to the three numbers the trainer records, and the gradients written straight
into each parameter's ``.grad``. It applies where ``applies(model)`` says; every other
model, torch.compile and DistributedDataParallel train through autograd. Under ``--precision bf16`` the
products run in bfloat16 as autocast would run them, the rest in float32.
"""
from __future__ import annotations

import torch
from torch import nn

from .distributions import Bernoulli, GaussianPosterior, StandardNormal
from .distributions.likelihoods import _EXP_MAX
from .models import VAE
from .nets import MLPDecoder, MLPEncoder
from .objectives import ELBO

_ACTIVATIONS = (nn.ReLU, nn.Tanh)


def applies(model: nn.Module) -> bool:
    """Whether ``model`` is the MLP VAE this step derives: Bernoulli decoder, ReLU or tanh units, the ELBO with the
    analytic KL, one reparameterized sample per example."""
    if type(model) is not VAE or not isinstance(model.encoder, MLPEncoder) or not isinstance(model.decoder, MLPDecoder):
        return False
    if model.likelihood is not Bernoulli or model.decoder.n_params != 1 or type(model.prior) is not StandardNormal \
            or type(model.posterior) is not GaussianPosterior:
        return False
    objective = model.objective
    if type(objective) is not ELBO or (objective.mc_samples, objective.kl) != (1, "analytic"):
        return False
    acts = [m for m in (*model.encoder.net, *model.decoder.net) if not isinstance(m, nn.Linear)]
    return all(isinstance(a, _ACTIVATIONS) for a in acts) and len({type(a) for a in acts}) <= 1


class FusedStep:
    """``step(x, kl_weight, generator, weight)``: fills every parameter's ``.grad`` with the gradient of
    ``weight`` × (the batch's mean −ELBO) and returns (−ELBO, reconstruction, KL), batch means."""

    def __init__(self, model: VAE, matmul_dtype: torch.dtype = torch.float32):
        if not applies(model):
            raise ValueError("FusedStep derives the MLP Bernoulli VAE only; see fused.applies")
        self.model = model
        # bf16: the products (and the hidden units between them) in bfloat16, as autocast runs them; the densities,
        # the KL, the reparameterization and every gradient summed into .grad stay in float32
        self.low = matmul_dtype
        self.enc = [m for m in model.encoder.net if isinstance(m, nn.Linear)]
        self.dec = [m for m in model.decoder.net if isinstance(m, nn.Linear)]
        self.tanh = any(isinstance(m, nn.Tanh) for m in (*model.encoder.net, *model.decoder.net))
        self.k = self.enc[-1].out_features // 2
        self.buffers: dict[int, list[torch.Tensor]] = {}
        for p in model.parameters():
            p.grad = torch.zeros_like(p)

    def _buffers(self, b: int, like: torch.Tensor) -> list[torch.Tensor]:
        """Layer outputs (in the products' dtype), then float32 (b, D) scratch tensors, two (three when the products
        are not float32: the logits' float32 copy): kept per batch size (a short last batch adds one set)."""
        if b not in self.buffers:
            sizes = [m.out_features for m in (*self.enc, *self.dec)]
            scratch = 2 if self.low == torch.float32 else 3
            self.buffers[b] = ([like.new_empty((b, n), dtype=self.low) for n in sizes]
                               + [like.new_empty((b, self.dec[-1].out_features)) for _ in range(scratch)])
        return self.buffers[b]

    def _weights(self, layers: list[nn.Linear]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(weight, bias) of each layer in the products' dtype: the parameters themselves in float32, else copies
        made once a step (the optimizer keeps the float32 ones)."""
        if self.low == torch.float32:
            return [(lin.weight, lin.bias) for lin in layers]
        return [(lin.weight.to(self.low), lin.bias.to(self.low)) for lin in layers]

    def _act_(self, h: torch.Tensor) -> torch.Tensor:
        return h.tanh_() if self.tanh else h.relu_()

    def _act_backward(self, d: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """d ⊙ f'(a) from the unit's output h = f(a)."""
        return torch.ops.aten.tanh_backward(d, h) if self.tanh else torch.ops.aten.threshold_backward(d, h, 0)

    def _forward(self, weights: list[tuple[torch.Tensor, torch.Tensor]], h: torch.Tensor,
                 outs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each layer's input, then the last layer's output (no activation after it)."""
        inputs = []
        h = h.to(self.low)
        for i, ((w, bias), out) in enumerate(zip(weights, outs)):
            inputs.append(h)
            h = torch.addmm(bias, h, w.t(), out=out)
            if i < len(weights) - 1:
                self._act_(h)
        return inputs + [h]

    def _backward(self, layers: list[nn.Linear], weights: list[tuple[torch.Tensor, torch.Tensor]],
                  inputs: list[torch.Tensor], d: torch.Tensor, alpha: float, input_grad: bool) -> torch.Tensor | None:
        """Weight and bias gradients of α·d flowing back through ``layers`` (into their float32 ``.grad``); the
        gradient at their input if asked (in float32)."""
        d = d.to(self.low)
        for i in reversed(range(len(layers))):
            lin, h = layers[i], inputs[i]
            if self.low == torch.float32:
                lin.weight.grad.addmm_(d.t(), h, beta=0, alpha=alpha)
            else:
                torch.mul(torch.mm(d.t(), h), alpha, out=lin.weight.grad)
            bias = torch.sum(d, 0, dtype=torch.float32, out=lin.bias.grad)
            if alpha != 1:
                bias.mul_(alpha)
            if i == 0 and not input_grad:
                return None
            d = torch.mm(d, weights[i][0])
            if i > 0:
                d = self._act_backward(d, h)
        d = d.float()
        return d if alpha == 1 else d.mul_(alpha)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, kl_weight: float, generator: torch.Generator | None, weight: float) -> torch.Tensor:
        b, k = len(x), self.k
        x = x.reshape(b, -1)
        n_enc, buffers = len(self.enc), self._buffers(b, x)
        outs, (u, scratch, *logits32) = buffers[:n_enc + len(self.dec)], buffers[n_enc + len(self.dec):]
        enc_w, dec_w = self._weights(self.enc), self._weights(self.dec)
        enc_in = self._forward(enc_w, x, outs[:n_enc])
        q = enc_in[-1].float()
        mu, log_var = q[:, :k], q[:, k:]
        std = torch.exp(0.5 * log_var)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)  # as DiagonalGaussian.rsample
        z = torch.addcmul(mu, std, eps)
        dec_in = self._forward(dec_w, z, outs[n_enc:])
        logits = dec_in.pop()
        if logits32:
            logits = logits32[0].copy_(logits)  # the densities in float32

        # −log p(x|z) = Σ log(1 + e^l) − Σ x·l, summed over the batch (the trainer records means only)
        torch.exp(logits, out=u).add_(1)
        log_u = torch.log(u, out=scratch).sum()
        if logits.device.type != "cpu" or not torch.isfinite(log_u):  # no host sync on an accelerator
            log_u = torch.where(logits > _EXP_MAX, logits, scratch).sum()  # e^l overflowed: there log(1 + e^l) = l
        rec = log_u - torch.dot(x.flatten(), logits.flatten())
        var = std * std
        kl = 0.5 * (var + mu * mu - 1 - log_var).sum()
        c = self.model.objective.beta * kl_weight
        terms = torch.stack([rec + c * kl, rec, kl]) / b

        # backward: ∂/∂l of −log p(x|z) is σ(l) − x = −(1/u − 1 + x), with the batch mean's 1/B folded into α
        g = weight / b
        d = u.reciprocal_().sub_(1).add_(x)
        dz = self._backward(self.dec, dec_w, dec_in, d, -g, input_grad=True)
        dq = x.new_empty((b, 2 * k))
        torch.add(dz, mu, alpha=c * g, out=dq[:, :k])  # + ∂ KL/∂μ = μ
        # ∂z/∂ log σ² = ε σ / 2; ∂ KL/∂ log σ² = (σ² − 1) / 2
        torch.addcmul((var - 1).mul_(0.5 * c * g), dz.mul_(eps), std, value=0.5, out=dq[:, k:])
        self._backward(self.enc, enc_w, enc_in[:-1], dq, 1.0, input_grad=False)
        return terms


def step_for(model: nn.Module, precision: str = "fp32") -> FusedStep | None:
    """The hand-derived step for ``model`` where it applies, else None; ``precision`` "bf16" runs its products in
    bfloat16."""
    if not applies(model):
        return None
    return FusedStep(model, torch.bfloat16 if precision == "bf16" else torch.float32)

