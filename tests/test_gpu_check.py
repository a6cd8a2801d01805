"""benchmarks/gpu_check.py (issue 16, item 5) runs on a CPU in the smoke profile, so it cannot rot.

One run of the script with tiny settings (one unit test, notebook 00, the smoke CIFAR-10 recipe with
bf16 autocast, channels-last and the parallel pytest steps forced on, the scaling step with 1 and 2
gloo processes on a CPU), then checks of its results file; a run with a failing
step must say so in the file and in its exit status. Nothing here is timed for publication.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
ONE_TEST = "tests/test_config_data.py::test_profiles_grow_and_pick"


def run_check(tmp_path, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), "--profile", "smoke", "--out", str(tmp_path / "results.json"),
                           "--cache-dir", str(tmp_path / "cache"), *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_check")
    proc = run_check(tmp, "--tests", ONE_TEST, "--notebooks", "notebooks/00_setup_and_course_map.ipynb",
                     "--amp", "on", "--channels-last", "on", "--parallel", "on")
    return proc, json.loads((tmp / "results.json").read_text()), tmp


@pytest.mark.slow
def test_smoke_run_passes_and_records_the_machine(smoke_run):
    proc, r, _ = smoke_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert r["status"] == "passed" and r["profile"] == "smoke" and r["schema"] == 1
    for key in ("command", "started", "finished", "total_seconds", "budget_seconds", "within_budget", "machine", "steps"):
        assert key in r, key
    m = r["machine"]
    for key in ("device", "gpu_name", "gpu_count", "torch", "cuda", "cudnn", "python", "platform", "cpu_count"):
        assert key in m, key
    assert m["torch"] == torch.__version__
    assert (m["gpu_name"] is None) == (not m["device"].startswith("cuda"))
    assert isinstance(r["within_budget"], bool) and r["budget_seconds"] == 480 and r["parallel"] is True
    steps = r["steps"]
    assert set(steps) == {"tests", "notebooks", "train", "scaling"}
    assert all(s["status"] == "passed" and s["wall_seconds"] > 0 for s in steps.values())
    assert all(s["wall_seconds"] <= r["total_seconds"] + 1 for s in steps.values())  # the pytest steps overlap


@pytest.mark.slow
def test_smoke_run_records_the_pytest_steps(smoke_run):
    _, r, _ = smoke_run
    tests, notebooks = r["steps"]["tests"], r["steps"]["notebooks"]
    assert tests["passed"] == 1 and tests["failed"] == tests["errors"] == 0 and tests["returncode"] == 0
    assert tests["failed_cases"] == [] and "log" in tests and "output_tail" in tests
    assert "test_gpu_check.py" in tests["command"]  # left out of its own tests step (--ignore)
    assert notebooks["notebooks"] == ["notebooks/00_setup_and_course_map.ipynb"]
    assert "--nbval-lax" in notebooks["command"] and notebooks["passed"] >= 1 and notebooks["failed"] == 0


@pytest.mark.slow
def test_smoke_run_trains_and_evaluates_the_recipe(smoke_run):
    _, r, _ = smoke_run
    t = r["steps"]["train"]
    assert t["dataset"] == "cifar10" and t["profile"] == "smoke"
    assert t["amp"] == "bf16 autocast" and t["channels_last"] is True
    assert t["recipe"]["model"] == "cifar_small_cnn" and t["recipe"]["train"]["attack"]["kind"] == "fgsm_rs"
    assert t["epochs_run"] == len(t["history"]) == t["recipe"]["train"]["epochs"]
    assert all(t[k] > 0 for k in ("data_seconds", "train_seconds", "eval_seconds"))
    res = t["results"]
    assert set(res) == {"clean", "pgd20", "pgd20_aa_subset", "autoattack"}
    for v in res.values():
        assert 0 <= v["ci_low"] <= v["accuracy"] <= v["ci_high"] <= 1 and v["accuracy"] == v["correct"] / v["n"]
    assert res["clean"]["n"] == res["pgd20"]["n"] == 64 and res["autoattack"]["n"] == res["pgd20_aa_subset"]["n"] == 16
    assert "steps=20" in res["pgd20"]["threat"] and "alpha=2/255" in res["pgd20"]["threat"]
    assert "AutoAttack" in res["autoattack"]["threat"] and "eps=8/255" in res["autoattack"]["threat"]
    assert res["pgd20"]["accuracy"] <= res["clean"]["accuracy"]  # same images: an attack never helps
    assert res["autoattack"]["accuracy"] <= res["pgd20_aa_subset"]["accuracy"]  # stronger attack, same images
    assert t["published"]["comparable"] is False  # only the full profile compares with Wong et al.
    assert len(t["checks"]) == 2 and all(c["passed"] for c in t["checks"].values())  # no full-profile targets in smoke


@pytest.mark.slow
def test_smoke_run_takes_the_distributed_path(smoke_run):
    """The scaling step (issue 36): one process, then torchrun; without CUDA, 2 gloo processes on the CPU."""
    _, r, _ = smoke_run
    s = r["steps"]["scaling"]
    cuda = r["machine"]["device"].startswith("cuda")
    assert s["status"] == "passed" and s["epochs"] == 1 and s["profile"] == "smoke"
    assert s["backend"] == ("nccl" if cuda else "gloo (CPU)") and (cuda or s["precision"] == "off")
    n = str(r["machine"]["gpu_count"]) if cuda else "2"
    assert set(s["runs"]) == ({"1", n} if n != "1" else {"1"})
    for k, run in s["runs"].items():
        m = run["metrics"]
        assert run["returncode"] == 0 and m["world_size"] == int(k) and m["global_batch"] == 128
        assert m["batch_per_process"] == 128 // int(k) and run["images_per_second_per_gpu"] > 0
        assert "torch.distributed.run" in run["command"] if k != "1" else "torch.distributed.run" not in run["command"]
    assert s["speedup"]["1"] == 1.0 and all(s["efficiency"][k] > 0 for k in s["runs"])


@pytest.mark.slow
def test_channels_last_option_loads_the_same_model(smoke_run, monkeypatch):
    """zoo.robust_model(memory_format=channels_last) loads the entry the check trained: NHWC weights, same outputs."""
    from course_utils import zoo

    _, _, tmp = smoke_run
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp / "cache"))
    cpu = torch.device("cpu")
    nhwc, history, _ = zoo.robust_model("cifar10", "smoke", device=cpu, progress=False, memory_format=torch.channels_last)
    nchw, _, _ = zoo.robust_model("cifar10", "smoke", device=cpu, progress=False)
    assert len(history) == 1  # loaded from the check's cache, not trained again
    convs = [p for p in nhwc.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert any(not p.is_contiguous() for p in convs)  # NHWC strides, not NCHW ones
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(nhwc(x), nchw(x), atol=1e-4)


def test_a_failing_step_fails_the_check(tmp_path):
    (tmp_path / "test_one_fails.py").write_text("def test_fails():\n    assert 1 == 2\n\n\ndef test_passes():\n    pass\n")
    proc = run_check(tmp_path, "--skip", "notebooks", "train", "scaling", "--tests", str(tmp_path / "test_one_fails.py"))
    r = json.loads((tmp_path / "results.json").read_text())
    assert proc.returncode == 1 and r["status"] == "failed" and r["parallel"] is False
    tests = r["steps"]["tests"]
    assert tests["status"] == "failed" and tests["returncode"] == 1 and tests["passed"] == tests["failed"] == 1
    assert len(tests["failed_cases"]) == 1 and tests["failed_cases"][0].endswith("::test_fails")
    assert r["steps"]["notebooks"]["status"] == r["steps"]["train"]["status"] == r["steps"]["scaling"]["status"] == "skipped"


def test_checks_flag_a_broken_full_run_and_import_leaves_cuda_alone():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    assert not torch.cuda.is_initialized()  # no CUDA at import
    good = {"clean": {"accuracy": 0.84}, "pgd20": {"accuracy": 0.47}, "pgd20_aa_subset": {"accuracy": 0.46},
            "autoattack": {"accuracy": 0.43}}
    assert all(c["passed"] for c in gpu_check.checks(good, "full").values())
    broken = {**good, "pgd20": {"accuracy": 0.05}, "autoattack": {"accuracy": 0.60}}  # catastrophic overfitting, weak AA
    failed = {k for k, c in gpu_check.checks(broken, "full").items() if not c["passed"]}
    assert failed == {"pgd20 >= 0.38", "autoattack <= pgd20 on its images + 0.02"}
    assert len(gpu_check.checks(broken, "smoke")) == 2  # targets only in the full profile


def test_scaling_uses_every_gpu_that_splits_the_global_batch(monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    assert gpu_check.scaling_counts(torch.device("cpu")) == [1, 2]  # gloo processes on a CPU
    for gpus, counts in ((1, [1]), (2, [1, 2]), (6, [1, 4]), (8, [1, 8])):
        monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
        assert gpu_check.scaling_counts(torch.device("cuda"), batch=128) == counts, gpus
