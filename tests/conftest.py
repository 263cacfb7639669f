import functools
import http.server
import threading
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _denormals_as_pytorch_keeps_them():
    """fit() flushes denormals process-wide: every test starts from PyTorch's default."""
    yield
    torch.set_flush_denormal(False)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert (SHARED_DATA / "mnist").is_dir(), f"the shared data sets are expected at {SHARED_DATA}"
    return SHARED_DATA


def _train(out: Path, **sets):
    import json

    from vaekit import Config, fit
    from vaekit.report import write_report

    run = fit(Config(out=str(out)).override([f"{k}={json.dumps(v)}" for k, v in {"train.tensorboard": False, **sets}.items()]))
    write_report(run.dir, run.model, run.data)  # as vaekit train does
    return run


@pytest.fixture(scope="session")
def mnist_run(shared_data, tmp_path_factory):
    """The foundation's acceptance model: 10 epochs of the 784-400-20 MLP VAE on dynamically binarized MNIST."""
    return _train(tmp_path_factory.mktemp("runs") / "mnist-vae", **{"data.name": "mnist", "data.data_dir": str(shared_data),
                                                                    "data.download": False})


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """A small VAE on the embedded digits, trained once for the explore and report tests."""
    return _train(tmp_path_factory.mktemp("runs") / "digits-vae", **{"train.epochs": 30, "model.latent_dim": 4})


@pytest.fixture
def http_root(tmp_path):
    """A loopback HTTP server over a folder: (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
