"""vaekit: autoencoders and variational autoencoders on PyTorch.

    run = vaekit.fit(vaekit.Config())          # train; writes a run directory
    model = vaekit.load("runs/vae")            # safetensors + JSON, never a pickle
    q_z = model.encode(x)                      # q_z.mean, q_z.stddev
"""
from .checkpoint import load, read_config
from .config import Config, DataConfig, ModelConfig, TrainConfig, load_config
from .data import load_dataset
from .errors import VaekitError
from .evaluate import evaluate, log_likelihood
from .models import VAE, Autoencoder, DenoisingAutoencoder, build
from .train import Run, fit

__all__ = ["Autoencoder", "Config", "DataConfig", "DenoisingAutoencoder", "ModelConfig", "Run", "TrainConfig", "VAE",
           "VaekitError", "build", "evaluate", "fit", "load", "load_config", "load_dataset", "log_likelihood", "read_config"]
__version__ = "0.1.0"
