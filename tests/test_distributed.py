"""Issue 36: the full profile beyond one GPU, tested on the CPU with gloo and the smoke MNIST recipe.

- 2 processes under torchrun (gloo) train the same weights as 1 process with the same global batch
  (100 images = 2 x 50), within ``ATOL``, when nothing rank-dependent is drawn (FGSM without a random
  start); a positive control shows the comparison can fail (random starts change the weights by far more).
- A run killed with SIGKILL after epoch 1 and resumed with ``--resume`` ends with weights and history
  identical (bit for bit) to an uninterrupted run.
- A state from another recipe, another world size or a damaged file is refused with a clear message;
  an existing state is never overwritten without ``--resume``.
Each subprocess takes a few seconds (two epochs of 1,024 MNIST images).
"""
import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from course_utils import zoo
from course_utils.config import seed_everything
from course_utils.training.distributed import Precision, ResumeError, Run, precision_policy, rng_state, set_rng_state

REPO = Path(__file__).resolve().parents[1]
WORKER = str(REPO / "tests" / "zoo_train_worker.py")
ATOL = 1e-5  # float summation order (two half-batch means and gloo's all-reduce vs one mean); measured ~2.4e-7
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


def launch(*args, nproc: int = 1, check: bool = True):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COURSE_DEVICE": "cpu", "PYTHONPATH": str(REPO)}
    cmd = [*TORCHRUN, f"--nproc_per_node={nproc}", WORKER, *args] if nproc > 1 else [sys.executable, WORKER, *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def weights(folder) -> dict:
    (path,) = glob.glob(str(Path(folder) / "mnist_smoke_*.pt"))
    return torch.load(path, weights_only=True)


def history(folder):
    (path,) = glob.glob(str(Path(folder) / "mnist_smoke_*.history.csv"))
    return pd.read_csv(path)


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    launch(str(tmp / "one"), "--fixed-start")
    launch(str(tmp / "two"), "--fixed-start", nproc=2)
    killed = launch(str(tmp / "resumed"), "--kill-after", "1", check=False)
    state_after_kill = json.loads((tmp / "resumed" / "state.pt.json").read_text())
    launch(str(tmp / "resumed"), "--resume")
    launch(str(tmp / "uninterrupted"))
    return tmp, killed, state_after_kill


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(runs):
    tmp, _, _ = runs
    one, two = weights(tmp / "one"), weights(tmp / "two")
    seed_everything(0)
    init = zoo.build(zoo.run_recipe("mnist", "smoke")).state_dict()
    assert max_diff(one, init) > 100 * ATOL  # training moved the weights: the agreement is not trivial
    assert max_diff(one, two) < ATOL
    m1, m2 = (json.loads((tmp / d / "metrics.json").read_text()) for d in ("one", "two"))
    assert (m1["world_size"], m1["batch_per_process"]) == (1, 100) and (m2["world_size"], m2["batch_per_process"]) == (2, 50)
    assert m1["images_per_epoch_per_process"] == 2 * m2["images_per_epoch_per_process"] == 1024
    h1, h2 = history(tmp / "one"), history(tmp / "two")  # rank 0's held-out check, broadcast; losses averaged over ranks
    assert list(h1["val_robust"]) == list(h2["val_robust"])
    assert (h1["loss"] - h2["loss"]).abs().max() < 1e-4


@pytest.mark.slow
def test_random_starts_change_the_weights_beyond_the_tolerance(runs):
    """Positive control: the same recipe with FGSM-RS (random starts) trains weights far from the fixed-start ones."""
    tmp, _, _ = runs
    assert max_diff(weights(tmp / "one"), weights(tmp / "uninterrupted")) > 100 * ATOL


@pytest.mark.slow
def test_a_run_killed_after_epoch_1_resumes_to_identical_weights(runs):
    tmp, killed, state = runs
    assert killed.returncode == -9  # really killed (SIGKILL), after epoch 1's state was written
    assert state["epoch"] == 1 and state["world_size"] == 1
    resumed, straight = weights(tmp / "resumed"), weights(tmp / "uninterrupted")
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)
    cols = ["epoch", "eps", "steps", "loss", "train_acc", "val_clean", "val_robust"]
    assert history(tmp / "resumed")[cols].equals(history(tmp / "uninterrupted")[cols])


@pytest.mark.slow
def test_a_state_from_another_recipe_is_refused_by_the_cli(runs):
    tmp, _, _ = runs
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "course_utils.zoo", "train", "cifar10", "--profile", "smoke", "--out", str(tmp / "resumed")]
    proc = subprocess.run([*cmd, "--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "another recipe" in proc.stderr and "'target': 'mnist'" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr  # a message, not a crash (never overwriting without --resume: the unit test below)


def state_run(tmp_path, identity=None, world_size=1, resume=True):
    run = Run(state_path=tmp_path / "state.pt", resume=resume, identity=identity or {"target": "mnist"}, device="cpu")
    run.world_size = world_size
    return run


def test_check_state_refuses_other_recipes_world_sizes_and_damaged_files(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    state_run(tmp_path).save_state(model, opt, None, 1, {"history": []})
    assert state_run(tmp_path).check_state()["epoch"] == 1
    with pytest.raises(ResumeError, match="another recipe"):
        state_run(tmp_path, {"target": "cifar10"}).check_state()
    with pytest.raises(ResumeError, match=r"written by 1 process\(es\), this run has 2"):
        state_run(tmp_path, world_size=2).check_state()
    with pytest.raises(ResumeError, match="pass --resume"):
        state_run(tmp_path, resume=False).preflight()
    with open(tmp_path / "state.pt", "ab") as f:
        f.write(b"x")
    with pytest.raises(ResumeError, match="SHA-256"):
        state_run(tmp_path).check_state()
    assert state_run(tmp_path / "empty").preflight() is None  # --resume with nothing to resume: a fresh start


def test_rng_state_round_trip_restores_every_generator():
    import random

    import numpy as np

    g = torch.Generator().manual_seed(3)
    saved = rng_state(g)
    first = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=g).item())
    set_rng_state(saved, g)
    assert (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=g).item()) == first


def test_precision_policy_is_fp32_on_the_cpu_and_refuses_autocast_there():
    p = precision_policy("cpu")
    assert p.dtype is None and p.scaler is None and not p.channels_last and str(p) == "fp32"
    assert precision_policy("cpu", "off").dtype is None
    with pytest.raises(ValueError, match="needs CUDA"):
        precision_policy("cpu", "bf16")
    with pytest.raises(ValueError, match="precision must be"):
        precision_policy("cpu", "fp8")
    assert str(Precision(torch.bfloat16, None, True)) == "bf16 autocast, channels-last"


def test_global_batch_must_split_evenly():
    run = Run(device="cpu")
    run.world_size = 3
    with pytest.raises(ValueError, match="does not split evenly"):
        run.per_rank_batch(100)
    run.world_size = 4
    assert run.per_rank_batch(128) == 32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("choice", ["auto", "fp16"])
def test_precision_policy_trains_the_cifar_smoke_recipe_on_cuda(tmp_path, monkeypatch, choice):
    """On CUDA: autocast (bf16 where supported; fp16 with a GradScaler), channels-last, a resumable state."""
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    m = zoo.train_recipe("cifar10", "smoke", tmp_path / "run", precision=choice, epochs=1, progress=False)
    assert m["device"].startswith("cuda") and "channels-last" in m["precision"]
    assert ("fp16 autocast + GradScaler" in m["precision"]) == (choice == "fp16" or not torch.cuda.is_bf16_supported())
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=True)
    assert (state["scaler"] is not None) == ("GradScaler" in m["precision"]) and state["epoch"] == 1
    assert "cuda" in state["rng"][0]  # the CUDA generators are saved too
    (path,) = glob.glob(str(tmp_path / "run" / "cifar10_smoke_*.pt"))
    assert all(torch.isfinite(v.float()).all() for v in torch.load(path, weights_only=True).values())
