"""Distributions as objects: likelihoods p(x|z), posteriors q(z|x) (a diagonal Gaussian or a flow) and priors p(z).

Each wraps a ``torch.distributions`` object whose ``log_prob`` sums over the event
dimensions (pixels, latent units), so the loss reads ``-p_x.log_prob(x) + β·KL``.
Every ``sample`` takes an explicit ``generator`` so a seed makes a run repeat.
"""
from .common import LOG_2PI
from .latent import DiagonalGaussian, PointMass, StandardNormal, closed_form_kl, kl_standard_normal
from .likelihoods import Bernoulli, Categorical256, Gaussian, GaussianLearned, Likelihood
from .posteriors import IAF, FlowPosterior, GaussianPosterior, PlanarFlow
from .priors import MixtureOfGaussians, VampPrior

__all__ = ["IAF", "LOG_2PI", "Bernoulli", "Categorical256", "DiagonalGaussian", "FlowPosterior", "Gaussian", "GaussianLearned",
           "GaussianPosterior", "Likelihood", "MixtureOfGaussians", "PlanarFlow", "PointMass", "StandardNormal", "VampPrior",
           "closed_form_kl", "kl_standard_normal"]
