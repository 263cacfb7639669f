"""vaekit: autoencoders and variational autoencoders on PyTorch.

    model = vaekit.VAE(encoder, decoder, likelihood="bernoulli", latent_dim=16)   # any nn.Module encoder / decoder
    run = vaekit.fit(model, x_train, val=x_val, epochs=5, out="runs/mine")       # tensors, arrays or a Dataset
    result = vaekit.evaluate(model, x_test, k=1000)                              # ELBO, log p(x), active units, ...
    model = vaekit.load("runs/mine")                                              # safetensors + JSON, never a pickle
    run = vaekit.fit(vaekit.Config())                                             # or everything from a config
"""
from . import distributions, nets, objectives
from .checkpoint import load, read_config
from .config import Config, DataConfig, ModelConfig, TrainConfig, load_config
from .data import load_dataset
from .errors import VaekitError
from .evaluation import evaluate, log_likelihood
from .models import VAE, Autoencoder, ConditionalVAE, DenoisingAutoencoder, HierarchicalVAE, build
from .objectives import ELBO, IWAE, LossOutput, ScoreFunction
from .registry import register
from .train import fit
from .trainer import Run

__all__ = ["Autoencoder", "ConditionalVAE", "Config", "DataConfig", "DenoisingAutoencoder", "ELBO", "HierarchicalVAE", "IWAE",
           "LossOutput", "ModelConfig", "Run", "ScoreFunction", "TrainConfig", "VAE", "VaekitError", "build", "distributions",
           "evaluate", "fit", "load", "load_config", "load_dataset", "log_likelihood", "nets", "objectives", "read_config",
           "register"]
__version__ = "0.1.0"
