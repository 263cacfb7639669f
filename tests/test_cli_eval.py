import json

import pytest

from vaekit.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "r"
    assert main(["train", "--out", str(out), "--epochs", "3", "--latent-dim", "4", "--no-progress", "--set", "train.tensorboard=false"]) == 0
    return out


def test_eval_writes_eval_json_and_prints_a_table(run_dir, capsys):
    assert main(["eval", str(run_dir), "--k", "100", "--subset", "50", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "log p(x), importance sampled K=100" in text and "active units" in text
    r = json.loads((run_dir / "eval.json").read_text())
    assert r["n"] == 50 and r["k"] == 100 and r["log_px"] > r["elbo"]


def test_eval_shows_progress_over_the_images(run_dir, capsys):
    assert main(["eval", str(run_dir), "--k", "20", "--subset", "30", "--no-baselines"]) == 0
    err = capsys.readouterr().err
    assert "evaluating" in err and "30/30" in err


@pytest.mark.parametrize("args, message", [
    (["--k", "0"], "k=0: expected a whole number from 1 to"),
    (["--data", "mnist"], "has rows of shape (1, 28, 28), but the model takes (1, 8, 8)"),
])
def test_eval_bad_input(run_dir, shared_data, capsys, args, message):
    assert main(["eval", str(run_dir), "--no-progress", "--data-dir", str(shared_data), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_eval_of_a_missing_or_weightless_run(tmp_path, run_dir, capsys):
    assert main(["eval", str(tmp_path / "nothing")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "config.json").write_text((run_dir / "config.json").read_text())
    assert main(["eval", str(tmp_path / "w")]) == 2
    assert "model.safetensors is missing" in capsys.readouterr().err
