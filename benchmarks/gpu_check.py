"""The prepared GPU check (issue 16, item 5): one command, about 8 minutes on one modern GPU.

    COURSE_DATA_DIR=../shared/data python benchmarks/gpu_check.py [--skip tests notebooks train scaling]
        [--profile smoke|quick|full] [--out results.json] [--aa-n N] [--parallel auto|on|off] [--scaling-epochs E]

Four steps, each selectable, all on ``get_device()`` (``COURSE_DEVICE`` overrides):

- tests:     the unit tests (``pytest tests/``, smoke profile, ``gpu``-marked tests included: they
             run where CUDA is present and are skipped without it). This file's own test is left out.
- notebooks: every notebook under nbval in the smoke profile, with the flags of the README's test
             command (``pyproject.toml``'s addopts), on the device.
- train:     the CIFAR-10 robust recipe of ``course_utils.zoo`` in ``--profile`` (full: PreActResNet-18,
             FGSM with random start, alpha 10/255, 15 epochs, SGD one-cycle to 0.2; Wong, Rice & Kolter
             2020), trained from scratch in its own cache folder, with bf16 autocast (``--amp``) and
             channels-last weights (``--channels-last``) where they help (default: on CUDA only).
             Then clean and PGD-20 (L-inf eps 8/255, alpha 2/255, 1 start) accuracy on the profile's
             ``n_test`` test images (all 10,000 in full), and AutoAttack (standard; official pyautoattack when installed, else torchattacks) on a
             stratified subset of ``--aa-n`` test images (full: 500; PGD-20 on the same images beside
             it), each with its n and a 95% Clopper-Pearson interval.

- scaling:   the distributed path of ``python -m course_utils.zoo train`` (issue 36): the CIFAR-10 recipe
             of ``--profile`` for ``--scaling-epochs`` epochs (full: 2, else 1) in one process on one
             GPU, then under ``torchrun`` with one process per visible GPU (DDP, NCCL, SyncBatchNorm,
             the same global batch of 128); images per second per GPU (training only, the held-out
             check excluded; the last epoch's when there are two, so cuDNN's warm-up is left out) and
             the speed-up from 1 to N GPUs. Without CUDA it runs 1 and 2 gloo processes on the CPU in
             the smoke profile: a check that the path works, not a throughput.

On a CUDA machine with 8 or more CPU cores the tests and notebooks steps run at the same time
(``--parallel``; each pytest process gets half the cores), then the train step runs alone, so its
wall time is the GPU's. The default profile is ``full`` on CUDA and ``smoke`` elsewhere: on a CPU
the check runs in minutes (``tests/test_gpu_check.py`` runs it so it cannot rot). One JSON results file
(default ``cache_dir()/benchmarks/gpu_check_<profile>.json``) holds the machine (GPU name, torch,
CUDA and cuDNN versions), each step's status, counts and wall time, and the training results; it is
rewritten after every step, so an interrupted run keeps what finished. Exit status 0 when every
selected step passed. Times from a shared machine are not for publication.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from course_utils.config import atomic_write, cache_dir, get_device, get_profile, seed_everything  # noqa: E402

STEPS = ("tests", "notebooks", "train", "scaling")
BUDGET_SECONDS = 480  # issue 16: "at most about 8 minutes on one modern GPU"
EPS = 8 / 255
NBVAL_FLAGS = ["--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=1200"]  # pyproject.toml's addopts
AA_N = {"smoke": 16, "quick": 100, "full": 500}  # AutoAttack images per profile (a subset: it is the slow part)
# full profile: well below Wong et al.'s 86.06% clean / 46.06% PGD-50 x 10 and RobustBench's 43.21% AutoAttack,
# so only a broken run (catastrophic overfitting, a precision problem) misses them
FULL_TARGETS = {"clean": 0.75, "pgd20": 0.38, "autoattack": 0.35}


def machine(device) -> dict:
    """What ran the check: device, GPU name, versions, CPU count (CUDA is queried only when present)."""
    import torch

    cuda = device.type == "cuda"
    return {"device": str(device), "gpu_name": torch.cuda.get_device_name(device) if cuda else None,
            "gpu_count": torch.cuda.device_count() if cuda else 0, "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
            "python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count()}


def junit_counts(path: Path) -> dict:
    """passed / failed / errors / skipped counts (nbval: one per notebook cell), the failed cases and the
    most frequent skip reasons, from a pytest JUnit XML."""
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    reasons, failed = {}, []
    for case in ET.parse(path).getroot().iter("testcase"):
        kinds = [child.tag for child in case]
        if "failure" in kinds or "error" in kinds:
            counts["failed" if "failure" in kinds else "errors"] += 1
            failed.append(f"{case.get('classname', '')}::{case.get('name', '')}")
        elif "skipped" in kinds:
            counts["skipped"] += 1
            msg = case.find("skipped").get("message", "")
            reasons[msg] = reasons.get(msg, 0) + 1
        else:
            counts["passed"] += 1
    counts["failed_cases"] = failed[:50]
    counts["skip_reasons"] = dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:10])
    return counts


def start_pytest(args: list[str], env: dict, workdir: Path, name: str) -> dict:
    """Start pytest in a subprocess (the repository as working directory), its output in ``<name>.log``."""
    xml, log = workdir / f"{name}.xml", workdir / f"{name}.log"
    xml.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-q", "-o", "addopts=", "-p", "no:cacheprovider", "-ra",
           f"--junitxml={xml}", *args]
    with open(log, "w", encoding="utf-8") as f:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT, text=True)
    return {"proc": proc, "cmd": cmd, "xml": xml, "log": log, "t0": time.perf_counter()}


def finish_pytest(run: dict) -> dict:
    """Wait for a ``start_pytest`` run: status (passed = exit 0 with at least one test run), counts, wall time."""
    returncode = run["proc"].wait()
    out = {"command": " ".join(run["cmd"][1:]), "returncode": returncode, "seconds": time.perf_counter() - run["t0"],
           "log": str(run["log"])}
    if run["xml"].exists():
        out.update(junit_counts(run["xml"]))
    ran = out.get("passed", 0) + out.get("failed", 0) + out.get("errors", 0)
    out["status"] = "passed" if returncode == 0 and ran > 0 else "failed"
    tail = run["log"].read_text(encoding="utf-8", errors="replace")[-3000:]
    out["output_tail"] = tail
    print(tail[-1500:], flush=True)
    return out


def start_tests(opts, env, workdir) -> dict:
    paths = opts.tests or ["tests"]
    return start_pytest([*paths, f"--ignore={REPO / 'tests' / 'test_gpu_check.py'}"], env, workdir, "tests")


def start_notebooks(opts, env, workdir) -> dict:
    paths = opts.notebooks or sorted(str(p.relative_to(REPO)) for p in (REPO / "notebooks").rglob("*.ipynb")
                                     if ".ipynb_checkpoints" not in p.parts)
    run = start_pytest([*NBVAL_FLAGS, *paths], env, workdir, "notebooks")
    run["notebooks"] = paths
    return run


def amp_enabled(choice: str, device) -> bool:
    """bf16 autocast: ``on``, ``off``, or ``auto`` = on CUDA devices that support bf16 (no loss scaling needed)."""
    import torch

    if choice != "auto":
        return choice == "on"
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def step_train(opts, device) -> dict:
    """Train the CIFAR-10 robust recipe of ``--profile`` from scratch and evaluate it (clean, PGD-20, AutoAttack)."""
    import contextlib

    import torch

    from course_utils import zoo
    from course_utils.attacks import AttackConfig
    from course_utils.data import load_dataset, subset_tensors
    from course_utils.evaluation import evaluate
    from course_utils.interop import autoattack
    from course_utils.training import cached_model_path

    profile = opts.profile
    amp = amp_enabled(opts.amp, device)
    channels_last = opts.channels_last == "on" or (opts.channels_last == "auto" and device.type == "cuda")
    out = {"dataset": "cifar10", "profile": profile, "amp": "bf16 autocast" if amp else "off",
           "channels_last": channels_last, "recipe": json.loads(zoo.recipe_json(zoo.recipe("cifar10", profile)))}
    old_cache = os.environ.get("COURSE_CACHE_DIR")
    os.environ["COURSE_CACHE_DIR"] = str(opts.cache_dir)  # its own models: always trained, the course's cache untouched
    try:
        t0 = time.perf_counter()
        load_dataset("cifar10", "train")  # decoded once into the check's cache folder (timed apart from training)
        test = load_dataset("cifar10", "test")
        out["data_seconds"] = time.perf_counter() - t0
        path = cached_model_path(zoo.cache_name("cifar10", profile))
        for f in (path, path.with_name(path.name + ".json")):
            f.unlink(missing_ok=True)
        seed_everything(0)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        with autocast:
            model, history, r = zoo.robust_model("cifar10", profile, device=device, progress=opts.progress,
                                                 memory_format=torch.channels_last if channels_last else None)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        out["train_seconds"] = time.perf_counter() - t0
        out["history"] = json.loads(history.to_json(orient="records"))
        out["epochs_run"] = len(history)

        n_test = opts.n_test or get_profile(profile).n_test
        aa_n = min(opts.aa_n or AA_N[profile], n_test)
        x, y = subset_tensors(test, n_test, seed=0)
        xa, ya = subset_tensors(test, aa_n, seed=0)  # stratified, like the n_test images
        gen = torch.Generator().manual_seed(0)  # seeds PGD's random starts (on the CPU, as everywhere in the course)
        pgd20 = AttackConfig(EPS, steps=20, alpha=2 / 255, generator=gen)
        results, t0 = {}, time.perf_counter()
        for key, data, attack, threat in (("clean", (x, y), None, "clean"), ("pgd20", (x, y), pgd20, None),
                                          ("pgd20_aa_subset", (xa, ya), pgd20, None),
                                          ("autoattack", (xa, ya), autoattack(EPS), None)):  # str() names the implementation
            t1 = time.perf_counter()
            res = evaluate(model, data, attack, threat=threat, progress=opts.progress)
            lo, hi = res.ci
            results[key] = {"threat": res.threat, "n": res.n, "correct": res.correct, "accuracy": res.accuracy,
                            "ci_low": lo, "ci_high": hi, "seconds": time.perf_counter() - t1}
            print(f"{key}: {res}", flush=True)
        out["eval_seconds"] = time.perf_counter() - t0
        out["results"] = results
        out["published"] = {"clean": 0.8606, "pgd50x10": 0.4606, "autoattack": 0.4321,
                            "source": "Wong et al. 2020 (locuslab/fast_adversarial README); RobustBench Wong2020Fast (AutoAttack)",
                            "comparable": profile == "full"}
        out["checks"] = checks(results, profile)
        failed = [k for k, v in out["checks"].items() if not v["passed"]]
        out["status"] = "failed" if failed else "passed"
        if failed:
            out["error"] = "checks failed: " + ", ".join(failed)
    finally:
        if old_cache is None:
            os.environ.pop("COURSE_CACHE_DIR", None)
        else:
            os.environ["COURSE_CACHE_DIR"] = old_cache
    return out


def scaling_counts(device, batch: int = 128) -> list[int]:
    """Process counts of the scaling step: 1 and every visible GPU (just 1 with one GPU), or the most GPUs
    that split the global ``batch`` evenly (6 GPUs -> 4); 1 and 2 on a CPU."""
    import torch

    n = torch.cuda.device_count() if device.type == "cuda" else 2
    while batch % n:
        n -= 1
    return [1] if n == 1 else [1, n]


def step_scaling(opts, device) -> dict:
    """Train ``--scaling-epochs`` epochs of the CIFAR-10 recipe with 1 process, then one per GPU (torchrun);
    per-GPU images per second and the 1 -> N speed-up, from each run's ``metrics.json``."""
    cuda = device.type == "cuda"
    epochs = opts.scaling_epochs or (2 if opts.profile == "full" else 1)
    precision = {"auto": "auto", "on": "bf16", "off": "off"}[opts.amp] if cuda else "off"
    env = {**os.environ, "COURSE_CACHE_DIR": str(opts.cache_dir), "PYTHONPATH": str(REPO)}
    env.setdefault("OMP_NUM_THREADS", "1")
    out = {"profile": opts.profile, "epochs": epochs, "precision": precision, "backend": "nccl" if cuda else "gloo (CPU)",
           "what": "GPUs" if cuda else "CPU processes (a code-path check, not a throughput)", "runs": {}}
    key = "images_per_second_per_process_last_epoch" if epochs > 1 else "images_per_second_per_process"
    from course_utils import zoo

    for n in scaling_counts(device, zoo.recipe("cifar10", opts.profile)["batch"]):
        folder = opts.cache_dir / "scaling" / f"n{n}"
        if folder.exists():
            import shutil

            shutil.rmtree(folder)  # a fresh run every time (no state to resume)
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"] if n > 1 \
            else [sys.executable]
        cmd = [*launcher, "-m", "course_utils.zoo", "train", "cifar10", "--profile", opts.profile, "--epochs", str(epochs),
               "--precision", precision, "--out", str(folder), "--quiet"]
        print(f"-- {n} process(es): {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        run = {"command": " ".join(cmd[1:]), "returncode": proc.returncode, "wall_seconds": time.perf_counter() - t0,
               "output_tail": (proc.stdout + proc.stderr)[-2000:]}
        if proc.returncode == 0:
            metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
            run.update(metrics=metrics, images_per_second_per_gpu=metrics[key],
                       images_per_second=metrics[key] * metrics["world_size"])
        out["runs"][str(n)] = run
        print(run["output_tail"][-500:], flush=True)
    runs = out["runs"]
    if all(r["returncode"] == 0 for r in runs.values()):
        base = runs["1"]["images_per_second"]
        out["speedup"] = {n: r["images_per_second"] / base for n, r in runs.items()}
        out["efficiency"] = {n: out["speedup"][n] / int(n) for n in runs}
        out["status"] = "passed"
    else:
        out["status"] = "failed"
        out["error"] = "a run failed: " + ", ".join(f"{n} process(es)" for n, r in runs.items() if r["returncode"])
    return out


def checks(results: dict, profile: str) -> dict:
    """Sanity checks that fail the train step: attacks never raise accuracy on the same images, AutoAttack
    is not weaker than PGD-20 (2 points of slack); in the full profile, also ``FULL_TARGETS``."""
    acc = {k: v["accuracy"] for k, v in results.items()}
    out = {"pgd20 <= clean": {"passed": acc["pgd20"] <= acc["clean"]},
           "autoattack <= pgd20 on its images + 0.02": {"passed": acc["autoattack"] <= acc["pgd20_aa_subset"] + 0.02}}
    if profile == "full":
        for key, low in FULL_TARGETS.items():
            out[f"{key} >= {low}"] = {"passed": acc[key] >= low}
    return out


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip", nargs="*", default=[], choices=STEPS, help="steps to leave out")
    ap.add_argument("--profile", choices=["smoke", "quick", "full"], default=None,
                    help="profile of the train step (default: full on CUDA, smoke elsewhere); tests and notebooks run in smoke")
    ap.add_argument("--out", type=Path, default=None, help="results file (default: cache_dir()/benchmarks/gpu_check_<profile>.json)")
    ap.add_argument("--cache-dir", type=Path, default=None,
                    help="the train step's cache folder (default: cache_dir()/benchmarks/gpu_check); "
                         "its robust model is trained again on every run")
    ap.add_argument("--amp", choices=["auto", "on", "off"], default="auto", help="bf16 autocast in training (auto: on CUDA with bf16)")
    ap.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto", help="channels-last weights (auto: on CUDA)")
    ap.add_argument("--n-test", type=int, default=None, help="test images for clean and PGD-20 (default: the profile's n_test)")
    ap.add_argument("--aa-n", type=int, default=None, help=f"AutoAttack images, a stratified test subset (default: {AA_N})")
    ap.add_argument("--tests", nargs="*", default=None, help="test paths or node ids for the tests step (default: tests/)")
    ap.add_argument("--notebooks", nargs="*", default=None, help="notebooks for the notebooks step (default: all)")
    ap.add_argument("--parallel", choices=["auto", "on", "off"], default="auto",
                    help="run the tests and notebooks steps at the same time (auto: on CUDA machines with 8+ CPU cores)")
    ap.add_argument("--scaling-epochs", type=int, default=None,
                    help="epochs of each scaling run (default: 2 in the full profile, where the first is warm-up; else 1)")
    ap.add_argument("--progress", action="store_true", help="show progress bars")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    opts = parse_args(argv)
    device = get_device()
    opts.profile = opts.profile or ("full" if device.type == "cuda" else "smoke")
    opts.cache_dir = (opts.cache_dir or cache_dir() / "benchmarks" / "gpu_check").resolve()
    out_path = opts.out or cache_dir() / "benchmarks" / f"gpu_check_{opts.profile}.json"
    workdir = opts.cache_dir / "pytest"
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "COURSE_PROFILE": "smoke"}
    report = {"schema": 1, "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "profile": opts.profile,
              "budget_seconds": BUDGET_SECONDS, "machine": machine(device),
              "steps": {s: {"status": "skipped" if s in opts.skip else "not run"} for s in STEPS}}

    def save():
        with atomic_write(out_path, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2, default=str)

    save()
    start = time.perf_counter()

    def record(step, result, t0):
        result["wall_seconds"] = time.perf_counter() - t0
        report["steps"][step] = result
        report["total_seconds"] = time.perf_counter() - start
        save()

    def failed(step, e):
        print(f"{step}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return {"status": "error", "error": f"{type(e).__name__}: {e}"}

    pytest_steps = [s for s in ("tests", "notebooks") if s not in opts.skip]
    parallel = opts.parallel == "on" or (opts.parallel == "auto" and device.type == "cuda" and (os.cpu_count() or 1) >= 8)
    report["parallel"] = parallel and len(pytest_steps) == 2
    if report["parallel"] and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 2) // 2))  # two pytest processes share the cores
    starters = {"tests": start_tests, "notebooks": start_notebooks}
    for group in ([pytest_steps] if report["parallel"] else [[s] for s in pytest_steps]):
        runs = {}
        for step in group:  # started together when parallel, then waited for in turn
            print(f"== {step}", flush=True)
            try:
                runs[step] = starters[step](opts, env, workdir)
            except Exception as e:  # record it and go on with the next step
                record(step, failed(step, e), time.perf_counter())
        for step, run in runs.items():
            result = finish_pytest(run)
            if "notebooks" in run:
                result["notebooks"] = run["notebooks"]
            record(step, result, run["t0"])
    if "train" not in opts.skip:
        print("== train", flush=True)
        t0 = time.perf_counter()
        try:
            result = step_train(opts, device)
        except Exception as e:
            result = failed("train", e)
        record("train", result, t0)
    if "scaling" not in opts.skip:
        print("== scaling", flush=True)
        t0 = time.perf_counter()
        try:
            result = step_scaling(opts, device)
        except Exception as e:
            result = failed("scaling", e)
        record("scaling", result, t0)
    report["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report["total_seconds"] = time.perf_counter() - start
    report["within_budget"] = report["total_seconds"] <= BUDGET_SECONDS
    ran = [s for s in STEPS if s not in opts.skip]
    report["status"] = "passed" if all(report["steps"][s]["status"] == "passed" for s in ran) else "failed"
    save()
    steps = ", ".join(f"{s} {report['steps'][s]['status']}" for s in STEPS)
    print(f"gpu check: {report['status']} in {report['total_seconds']:.0f} s ({steps}); results in {out_path}", flush=True)
    return 0 if report["status"] == "passed" else 1


if __name__ == "__main__":
    sys.exit(main())
