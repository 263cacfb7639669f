"""Parts a user registers in a module of their own; tests import it with ``vaekit --import tests.registered_parts``."""
import vaekit
from vaekit.objectives import ELBO, Objective


@vaekit.register("objective", "free-bits")
class FreeBits(Objective):
    """−E_q[log p(x|z)] + Σ_u max(λ, KL_u), averaged over the batch (Kingma et al., 2016): a KL below λ nats per
    unit is not pushed down further."""

    def __init__(self, nats: float = 0.5):
        self.nats = nats

    def __call__(self, model, x, kl_weight=1.0, generator=None, y=None):
        q_z = model.encode(x, y)
        rec = -model.decode(q_z.rsample(None, generator), y).log_prob(x)
        kl_units = q_z.kl_per_unit().mean(0)  # (k,) batch means per unit
        loss = rec.mean() + kl_weight * kl_units.clamp(min=self.nats).sum()
        return vaekit.LossOutput(loss, rec.mean(), kl_units.sum())


assert ELBO  # the built-in objectives sit beside it
