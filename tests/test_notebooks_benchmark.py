"""benchmarks/notebooks.py, the course-map benchmark, on a tiny generated notebook in the smoke profile.

The notebook logs to its cache folder whether it found its "model" (a file under ``cache_dir()/models``)
and which data arrays it was given, so the test sees that the cold run starts from an empty model cache
holding only the decoded data arrays, and that the warm run reuses what the cold run left. A second
notebook raises, and its status must say so. The load monitor is checked against a CPU burner.
"""
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "benchmarks" / "notebooks.py"
_spec = importlib.util.spec_from_file_location("course_map_benchmark", SCRIPT)  # by path: benchmarks/ is no package
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

CELLS = [
    "import os\nfrom course_utils.config import cache_dir, get_profile",
    "models = cache_dir() / 'models'\n"
    "state = 'cached' if (models / 'tiny.pt').exists() else 'trained'\n"
    "arrays = sorted(p.name for p in cache_dir().glob('*.npz'))\n"
    "extra = sorted(p.name for p in models.glob('*')) if models.exists() else []\n"
    "with open(cache_dir() / 'log.txt', 'a') as f:\n"
    "    f.write(f'{state} {get_profile().name} arrays={arrays} models={extra}\\n')\n"
    "models.mkdir(exist_ok=True)\n"
    "(models / 'tiny.pt').write_bytes(b'weights')\n"
    "print(state)",
    "import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0])\nplt.show()",
]


def _notebook(path: Path, cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Tiny")] + [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def _run(tmp_path, *notebooks, passes=()):
    data_cache = tmp_path / "data_cache"
    (data_cache / "models").mkdir(parents=True, exist_ok=True)
    (data_cache / "cifar10_jpeg_0123_test.npz").write_bytes(b"arrays")  # a decoded data array: reused
    (data_cache / "cifar10_jpeg_0123_test.npz.json").write_text("{}")
    (data_cache / "models" / "old.pt").write_bytes(b"old")  # a trained model: never carried into a cold cache
    out = tmp_path / "out"
    cmd = [sys.executable, str(SCRIPT), *map(str, notebooks), "--profile", "smoke", "--data-cache", str(data_cache),
           "--no-prepare-data", "--work-dir", str(tmp_path / "work"), "--keep-outputs", str(out),
           "--json-out", str(tmp_path / "results.json"), "--table-out", str(tmp_path / "table.md"), "--timeout", "120",
           "--settle-max", "0"]  # tests time nothing: no wait for the load average
    cmd += ["--passes", *passes] if passes else []
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("COURSE_PROFILE", None)  # the script sets the profile itself
    # its own session, so that a timeout ends the script and its kernel together (a loaded shared CPU is slow)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"benchmarks/notebooks.py ran longer than 900 s:\n{stdout[-2000:]}{stderr[-2000:]}")
    proc = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    return proc, json.loads((tmp_path / "results.json").read_text()), (tmp_path / "table.md").read_text(), out


def test_cold_then_warm_on_a_tiny_notebook(tmp_path):
    nb = _notebook(tmp_path / "tiny.ipynb", CELLS)
    proc, results, table, out = _run(tmp_path, nb)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    # cold: no model, the data arrays only; warm: the cold run's model
    log = (tmp_path / "work" / "tiny" / "log.txt").read_text().splitlines()
    assert log == ["trained smoke arrays=['cifar10_jpeg_0123_test.npz'] models=[]",
                   "cached smoke arrays=['cifar10_jpeg_0123_test.npz'] models=['tiny.pt']"], log
    runs = results["runs"]
    assert [(r["notebook"], r["pass"], r["status"]) for r in runs] == [("tiny.ipynb", "cold", "ok"), ("tiny.ipynb", "warm", "ok")]
    for r in runs:
        assert r["wall_s"] > 0 and r["cells_run"] == len(CELLS) and len(r["slowest_cells"]) == 3
        assert r["data_arrays_reused"] == ["cifar10_jpeg_0123_test.npz", "cifar10_jpeg_0123_test.npz.json"]
        assert r["load_before"] is not None and r["foreign_cpu_cores"] is not None
        assert r["shared"] == bench.is_shared(r["load_before"], r["foreign_cpu_cores"])
    m = results["machine"]
    assert m["cpu"] and m["cores"] >= 1 and m["torch"] and m["torch_threads"] >= 1 and results["date"][:2] == "20"
    assert results["profile"] == "smoke"
    # the table: one row, cold and warm times, the machine in the header; shared runs labelled as such
    rows = [line for line in table.splitlines() if line.startswith("| tiny")]
    assert len(rows) == 1 and rows[0].count(" s |") >= 2 and "| ok |" in rows[0], table
    assert "**smoke** profile" in table and m["cpu"] in table
    assert ("Shared CPU" in table) == any(r["shared"] for r in runs) and ("shared (load" in rows[0]) == any(r["shared"] for r in runs)
    # the executed notebook of the cold run, with its figure and its record; the table beside it
    kept = nbformat.read(out / "tiny.ipynb", as_version=4)
    outputs = [o for c in kept.cells if c.cell_type == "code" for o in c.outputs]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert any("trained" in o.get("text", "") for o in outputs)
    assert kept.metadata["course_run"]["pass"] == "cold" and kept.metadata["course_run"]["profile"] == "smoke"
    assert (out / "course_map.md").read_text() == table and json.loads((out / "results.json").read_text())["runs"] == runs
    assert not (tmp_path / "data_cache" / "log.txt").exists()  # the data cache was only read


def test_a_warm_pass_on_a_kept_cold_runs_caches(tmp_path):
    """--passes warm --work-dir DIR: the warm run uses the caches a cold run left in DIR (so a warm pass can
    follow a cold-only course run); the kept executed notebook stays the cold run's; no cache, no run."""
    nb = _notebook(tmp_path / "tiny.ipynb", CELLS)
    proc, results, _, out = _run(tmp_path, nb, passes=["cold"])
    assert proc.returncode == 0 and [r["pass"] for r in results["runs"]] == ["cold"]
    proc, results, table, out = _run(tmp_path, nb, passes=["warm"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert [(r["pass"], r["status"]) for r in results["runs"]] == [("warm", "ok")]
    log = (tmp_path / "work" / "tiny" / "log.txt").read_text().splitlines()
    assert [line.split()[0] for line in log] == ["trained", "cached"], log
    assert nbformat.read(out / "tiny.ipynb", as_version=4).metadata["course_run"]["pass"] == "cold"
    refused = subprocess.run([sys.executable, str(SCRIPT), str(nb), "--passes", "warm", "--work-dir",
                              str(tmp_path / "no_such_run")], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "no cold run's cache" in refused.stderr


def test_a_failing_notebook_is_reported(tmp_path):
    bad = _notebook(tmp_path / "bad.ipynb", ["x = 1", "raise ValueError('broken on purpose')", "print('never')"])
    proc, results, table, _ = _run(tmp_path, bad)
    assert proc.returncode == 1
    cold = results["runs"][0]
    assert cold["status"].startswith("CellExecutionError in cell #2") and "broken on purpose" in cold["status"], cold
    assert cold["cells_run"] == 2
    assert "cold: CellExecutionError" in table


def test_course_order():
    names = [bench.relative_name(p) for p in bench.course_notebooks()]
    assert names[0].startswith("00_") and names[-1].startswith("projects/p")
    lessons = [n for n in names if "/" not in n]
    assert lessons == sorted(lessons) and names.index("08b_convex_relaxation.ipynb") == names.index("08_interval_bound_propagation.ipynb") + 1


def test_is_shared_thresholds():
    assert not bench.is_shared(0.1, 0.1) and not bench.is_shared(None, None)
    assert bench.is_shared(0.6, 0.0) and bench.is_shared(0.0, 0.6)


def test_load_monitor_counts_only_other_processes(monkeypatch):
    """foreign CPU = the machine's busy CPU-seconds during the block minus those of the monitored tree."""
    clock = {"busy": 100.0, "tree": 10.0}
    monkeypatch.setattr(bench, "system_busy_seconds", lambda: clock["busy"])
    monkeypatch.setattr(bench, "tree_cpu_seconds", lambda pid: clock["tree"])
    monkeypatch.setattr(bench, "load_average", lambda: 0.1)
    with bench.LoadMonitor(sample_s=0.05) as m:
        time.sleep(0.2)
        clock["busy"] += 3.0  # the notebook used 2.5 CPU-seconds, other processes 0.5
        clock["tree"] += 2.5
    assert m.foreign_seconds == pytest.approx(0.5) and m.foreign_cores == pytest.approx(0.5 / m.wall)
    assert m.shared == (m.foreign_cores > bench.BUSY_FOREIGN_CORES)


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs /proc (Linux)")
def test_tree_cpu_includes_reaped_children():
    """A kernel's subprocesses count as the notebook's own CPU, after they ended too."""
    burn = "import time\nwhile time.process_time() < 0.3: pass"
    wrapper = ("import subprocess, sys, time\n"
               f"subprocess.run([sys.executable, '-c', {burn!r}])\n"
               "print('done', flush=True)\ntime.sleep(300)")
    owner = subprocess.Popen([sys.executable, "-c", wrapper], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "done"
        assert bench.tree_cpu_seconds(owner.pid) >= 0.3
    finally:
        owner.kill()
        owner.wait()


def test_load_monitor_waits_for_the_previous_runs_load_to_decay(monkeypatch):
    """The load average of the notebook that just ended must not mark the next run shared: the monitor
    waits (up to SETTLE_MAX_S) for it to fall; a machine that stays busy is still labelled shared."""
    loads = iter([2.0, 1.2, 0.7, 0.4] + [0.4] * 100)
    monkeypatch.setattr(bench, "load_average", lambda: next(loads))
    monkeypatch.setattr(bench, "SETTLE_POLL_S", 0.01)
    with bench.LoadMonitor(sample_s=0.05) as m:
        pass
    assert m.load_before == 0.4 and not bench.is_shared(m.load_before, 0.0) and m.record()["settle_s"] >= 0
    monkeypatch.setattr(bench, "load_average", lambda: 1.5)  # someone else keeps the CPU busy
    monkeypatch.setattr(bench, "SETTLE_MAX_S", 0.05)
    with bench.LoadMonitor(sample_s=0.05) as m:
        pass
    assert m.load_before == 1.5 and m.shared


def _saved(date, machine_cpu="AMD EPYC", profile="quick", runs=()):
    machine = dict(cpu=machine_cpu, cores=2, cores_usable=2, torch="2.14.1", torch_threads=2, gpu=None, python="3.11.7")
    return {"profile": profile, "date": date, "machine": machine,
            "runs": [dict(notebook=nb, status="ok", wall_s=w, shared=False, slowest_cells=[], load_before=0.1,
                          foreign_cpu_cores=0.0, **{"pass": p}) for nb, p, w in runs]}


def test_table_from_saved_results_keeps_the_latest_run_per_notebook():
    """--table-from: the course map from several saved runs of one machine, rows in course order, a rerun
    notebook's newer time replacing the old one; two machines or two profiles are refused."""
    nb04, nb05 = "04_adversarial_training_mnist.ipynb", "05_adversarial_training_cifar10.ipynb"
    old = _saved("2026-12-02T10:00:00+00:00", runs=[(nb05, "cold", 364.0), (nb04, "cold", 748.0)])
    new = _saved("2026-12-03T10:00:00+00:00", runs=[(nb04, "cold", 300.0), ("00_setup_and_course_map.ipynb", "cold", 57.0)])
    merged = bench.merge_results([old, new])
    assert [(r["notebook"], r["wall_s"]) for r in merged["runs"]] == [
        ("00_setup_and_course_map.ipynb", 57.0), (nb04, 300.0), (nb05, 364.0)]
    table = bench.markdown_table(merged)
    assert "2026-12-02 to 2026-12-03" in table and "| 5 min 0 s |" in table and "12 min 28 s" not in table
    with pytest.raises(ValueError, match="two machines"):
        bench.merge_results([old, _saved("2026-12-03T10:00:00+00:00", machine_cpu="Intel", runs=[(nb04, "cold", 1.0)])])
    with pytest.raises(ValueError, match="profiles"):
        bench.merge_results([old, _saved("2026-12-03T10:00:00+00:00", profile="smoke")])
