"""The CUDA path; these tests run only where a CUDA device is present and are reported as skipped elsewhere."""
import json

import pytest
import torch

from vaekit import Config, fit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def config(out, **sets) -> Config:
    base = {"data.name": "digits", "train.batch_size": 16, "train.epochs": 1, "train.tensorboard": False,
            "model.latent_dim": 4, "train.device": "cuda"}
    base.update(sets)
    return Config(out=str(out)).override([f"{k}={json.dumps(v)}" for k, v in base.items()])


def host_to_device_copies(cfg: Config) -> int:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]) as prof:
        fit(cfg)
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if "Memcpy HtoD" in e.name)


def test_training_on_cuda_copies_nothing_to_the_device_per_step(tmp_path):
    # 10 and 90 steps of one epoch: whatever is copied once (weights, data set, epoch order) cancels out
    short = host_to_device_copies(config(tmp_path / "short", **{"train.max_steps": 10}))
    long = host_to_device_copies(config(tmp_path / "long", **{"train.max_steps": 90}))
    assert long - short < 8, (short, long)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_on_cuda_follows_the_cpu_loss(tmp_path, precision):
    cpu = fit(config(tmp_path / "cpu", **{"train.device": "cpu", "train.epochs": 3}))
    gpu = fit(config(tmp_path / precision, **{"train.precision": precision, "train.epochs": 3}))
    assert next(gpu.model.parameters()).is_cuda
    for a, b in zip(cpu.history, gpu.history):  # other ε draws on the device: close, not equal
        assert abs(a["train_loss"] - b["train_loss"]) < 0.05 * a["train_loss"]
    assert gpu.history[-1]["train_loss"] < gpu.history[0]["train_loss"]
    assert abs(gpu.test["loss"] - cpu.test["loss"]) < 0.05 * cpu.test["loss"]
