"""The course-map benchmark: every notebook run top to bottom, cold then warm, one at a time.

    COURSE_DATA_DIR=../shared/data python benchmarks/notebooks.py --profile quick \\
        --json-out course_map.json --table-out course_map.md --keep-outputs executed/

Without notebook arguments it runs the whole course in course order (``notebooks/*.ipynb``, then
``notebooks/projects/*.ipynb``). Each notebook runs twice in a fresh Jupyter kernel (nbclient):

- **cold**: ``COURSE_CACHE_DIR`` is a fresh folder of its own, empty but for the decoded data arrays.
  ``cache_dir()`` holds two kinds of files: the decoded data arrays that ``course_utils.data`` writes
  at its top level (``cifar10_jpeg_<sha>_<split>.npz`` with its ``.npz.json`` sidecar: the same bytes
  on every machine, decoded once from the shipped archive) and everything a lesson derives in
  subfolders (``models/`` with the trained models and their histories, ``p3_fraud_gate/``, ``p4/``,
  ...). A cold run starts with the first kind only (hard links, or copies, of the top-level
  ``*.npz`` / ``*.npz.json`` of ``--data-cache``, the course's ``cache_dir()`` by default), so it
  trains every model a learner's first run trains, without timing a JPEG decode a learner does once
  for the whole course. ``--prepare-data`` (the default) decodes those arrays into ``--data-cache``
  before the first run when they are missing. Other caches (pip, matplotlib's font list, the
  operating system's file cache) are not emptied.
- **warm**: the same notebook again with the same cache folder (its models now trained).

For every run: wall time (from kernel start to kernel shutdown), the three slowest cells, the status,
the 1-minute load average before the start (from ``/proc/loadavg``, after waiting up to ``SETTLE_MAX_S``
for it to fall to ``BUSY_LOAD``, so that the previous notebook's own load has decayed; the wait is
recorded as ``settle_s`` and is not part of the wall time) and its maximum during the run, and
the CPU time that processes other than this script and its kernel used during the run (system busy
time from ``/proc/stat`` minus this process tree's CPU time), as an average number of cores. A run is
labelled **shared** when the load average before it exceeded ``BUSY_LOAD`` (0.5) or other processes
used more than ``BUSY_FOREIGN_CORES`` (0.5 cores) on average while it ran: a table with any shared
run says so in its header and rows. The load average during a run counts the notebook's own threads,
so it is recorded but not used for the label. The machine (CPU model, cores, torch version and
threads, Python, GPU) and the date go into the header.

Outputs: a JSON results file (``--json-out``, rewritten after every run, so an interrupted run keeps
what finished; default ``cache_dir()/benchmarks/notebooks_<profile>.json``), the markdown table
(printed, and written to ``--table-out``), and with ``--keep-outputs DIR`` the executed notebooks of
the cold run (outputs and figures as a learner's first run shows them, the run's record in the
notebook's ``course_run`` metadata) under ``DIR`` (``projects/`` for the projects) with the table as
``DIR/course_map.md`` and the results as ``DIR/results.json``: the input of ``benchmarks/build_site.py``.
Nothing is written into ``notebooks/``. ``--passes cold`` runs only the cold pass; ``--passes warm
--work-dir DIR`` runs only the warm pass, on the per-notebook caches that a cold run left in ``DIR``
(``--work-dir`` keeps them; without it they are removed at the end).
``--table-from A.json B.json ...`` runs nothing and builds one table from saved results of the same
machine and profile (for each notebook and pass, the latest file's run), so that notebooks rerun
after a change replace their rows without rerunning the whole course.

Times from a shared machine are not for the README: run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
DATA_ARRAY_GLOBS = ("*.npz", "*.npz.json")  # course_utils.data's decoded arrays and sidecars, top level of cache_dir()
BUSY_LOAD = 0.5  # 1-minute load average before a run above which the machine was not idle
BUSY_FOREIGN_CORES = 0.5  # average cores used by other processes during a run above which it was shared
LOAD_SAMPLE_S = 2.0  # how often /proc/loadavg is read during a run
SETTLE_MAX_S = 240.0  # before a run, wait at most this long for the load average to fall to BUSY_LOAD
SETTLE_POLL_S = 5.0
PASSES = ("cold", "warm")


def course_notebooks() -> list[Path]:
    """The course in order: the lessons (00, 01, ..., 08, 08b, 09), then the projects (p1-p4)."""
    return sorted(NOTEBOOK_DIR.glob("*.ipynb")) + sorted((NOTEBOOK_DIR / "projects").glob("*.ipynb"))


def relative_name(path: Path) -> str:
    """``02_x.ipynb`` or ``projects/p1_x.ipynb`` for the course's notebooks; the file name otherwise."""
    try:
        return Path(path).resolve().relative_to(NOTEBOOK_DIR).as_posix()
    except ValueError:
        return Path(path).name


# --- the machine and its load ---------------------------------------------------------------------

def load_average() -> float | None:
    """The 1-minute load average (``/proc/loadavg``), or None where there is none."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def system_busy_seconds() -> float | None:
    """CPU seconds all processes of the machine have used since boot (``/proc/stat``, all but idle and iowait)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError, IndexError):
        return None
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root_pid: int) -> float:
    """CPU seconds used by ``root_pid`` and its descendants, the reaped ones included (psutil)."""
    import psutil

    try:
        root = psutil.Process(root_pid)
        procs = [root] + root.children(recursive=True)
    except psutil.Error:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:  # it ended between the listing and the reading
            pass
    return total


class LoadMonitor:
    """``with LoadMonitor(root_pid) as m: ...``: the load around a run and what other processes used.

    After the block: ``load_before``, ``load_max`` (1-minute load averages), ``foreign_cores`` (CPU
    seconds used by processes outside ``root_pid``'s tree, per wall-clock second), ``shared``.
    """

    def __init__(self, root_pid: int | None = None, sample_s: float = LOAD_SAMPLE_S):
        self.root_pid = os.getpid() if root_pid is None else root_pid
        self.sample_s = sample_s
        self.load_before = self.load_max = self.foreign_cores = self.foreign_seconds = self.wall = self.settle_s = None
        self._stop = threading.Event()

    def _sample(self):
        while not self._stop.wait(self.sample_s):
            load = load_average()
            if load is not None:
                self.load_max = load if self.load_max is None else max(self.load_max, load)

    def settle(self, max_wait_s: float | None = None, poll_s: float | None = None) -> float:
        """Wait (at most ``max_wait_s``) until the 1-minute load average is at most ``BUSY_LOAD``; the seconds
        waited. The load average decays over minutes, so the previous notebook's own work would otherwise
        mark the next run shared; a machine that stays busy still is, after the wait."""
        max_wait_s = SETTLE_MAX_S if max_wait_s is None else max_wait_s
        poll_s = SETTLE_POLL_S if poll_s is None else poll_s
        t0 = time.monotonic()
        while time.monotonic() - t0 < max_wait_s:
            load = load_average()
            if load is None or load <= BUSY_LOAD:
                break
            time.sleep(poll_s)
        self.settle_s = time.monotonic() - t0
        return self.settle_s

    def __enter__(self):
        self.settle(SETTLE_MAX_S)
        self.load_before = self.load_max = load_average()
        self._t0, self._busy0, self._tree0 = time.monotonic(), system_busy_seconds(), tree_cpu_seconds(self.root_pid)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.wall, busy1 = time.monotonic() - self._t0, system_busy_seconds()
        if self._busy0 is not None and busy1 is not None and self.wall > 0:
            self.foreign_seconds = (busy1 - self._busy0) - (tree_cpu_seconds(self.root_pid) - self._tree0)
            self.foreign_cores = max(0.0, self.foreign_seconds) / self.wall
        return False

    @property
    def shared(self) -> bool:
        return is_shared(self.load_before, self.foreign_cores)

    def record(self) -> dict:
        r = lambda v: None if v is None else round(v, 2)  # noqa: E731
        return {"settle_s": r(self.settle_s), "load_before": r(self.load_before), "load_max_during": r(self.load_max),
                "foreign_cpu_cores": r(self.foreign_cores), "shared": self.shared}


def is_shared(load_before: float | None, foreign_cores: float | None) -> bool:
    """The run's label: True when the machine was busy before it started or other processes used CPU during it."""
    return (load_before is not None and load_before > BUSY_LOAD) or (foreign_cores is not None and foreign_cores > BUSY_FOREIGN_CORES)


def machine_info() -> dict:
    """CPU model, cores, torch version and threads (this process, the kernels' environment), Python, GPU."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu, "cores": os.cpu_count(), "cores_usable": usable,
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(), "platform": platform.platform(),
    }


# --- caches ---------------------------------------------------------------------------------------

def data_arrays(folder: Path) -> list[Path]:
    """The decoded data arrays (and their sidecars) at the top level of a cache folder."""
    folder = Path(folder)
    return sorted({p for g in DATA_ARRAY_GLOBS for p in folder.glob(g) if p.is_file()})


def fresh_cache(folder: Path, data_cache: Path | None) -> list[str]:
    """Make ``folder`` an empty cache that holds only the data arrays of ``data_cache``; return their names."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    names = []
    for src in data_arrays(data_cache) if data_cache is not None and Path(data_cache).is_dir() else []:
        try:
            os.link(src, folder / src.name)  # read-only use: a rebuild replaces the link, never the source
        except OSError:  # another file system, or no hard links
            shutil.copy2(src, folder / src.name)
        names.append(src.name)
    return names


def prepare_data_arrays(data_cache: Path) -> dict:
    """Decode CIFAR-10 into ``data_cache`` once (a subprocess with ``COURSE_CACHE_DIR=data_cache``)."""
    code = ("from course_utils import data\n"
            "for split in ('train', 'test'):\n"
            "    data.load_dataset('cifar10', split)\n")
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, COURSE_CACHE_DIR=str(data_cache)),
                          capture_output=True, text=True)
    status = "ok" if proc.returncode == 0 else f"failed: {(proc.stderr.strip().splitlines() or ['?'])[-1][:200]}"
    return {"seconds": round(time.time() - t0, 1), "status": status, "arrays": [p.name for p in data_arrays(data_cache)]}


# --- running a notebook ---------------------------------------------------------------------------

@contextmanager
def environment(**values):
    """Set environment variables for the kernels started inside the block (they inherit os.environ)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items()})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def first_line(source: str) -> str:
    lines = [s for s in source.splitlines() if s.strip()]
    return lines[0][:60] if lines else ""


def run_notebook(path: Path, profile: str, cache: Path, timeout: int) -> tuple[dict, nbformat.NotebookNode]:
    """Execute ``path`` top to bottom in a fresh kernel; return (the run's record, the executed notebook)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(Path(path).parent)}})
    cells, status, started = [], "ok", datetime.now(timezone.utc).isoformat(timespec="seconds")
    with environment(COURSE_PROFILE=profile, COURSE_CACHE_DIR=cache), LoadMonitor() as monitor:
        t0 = time.time()
        try:
            with client.setup_kernel():
                for i, cell in enumerate(nb.cells):
                    if cell.cell_type != "code":
                        continue
                    c0 = time.time()
                    try:
                        client.execute_cell(cell, i)
                    finally:
                        cells.append({"index": i, "seconds": round(time.time() - c0, 2), "source": first_line(cell.source)})
        except Exception as e:  # report it, keep going with the next run
            message = str(e).strip().splitlines()
            where = f" in cell #{cells[-1]['index']}" if cells else ""
            status = f"{type(e).__name__}{where}: {(message[-1] if message else '')[:160]}"
        wall = time.time() - t0
    record = {"notebook": relative_name(path), "profile": profile, "started": started, "wall_s": round(wall, 1),
              "status": status, "cells_run": len(cells),
              "slowest_cells": sorted(cells, key=lambda c: -c["seconds"])[:3], **monitor.record()}
    return record, nb


# --- the table ------------------------------------------------------------------------------------

def duration(seconds: float | None) -> str:
    """``57 s`` below 90 seconds, ``7 min 11 s`` above."""
    if seconds is None:
        return "not run"
    if seconds < 90:
        return f"{seconds:.0f} s"
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s} s"


def link(name: str) -> str:
    """A course notebook as a link from the repository root (the README's), any other by its name."""
    stem = Path(name).stem
    return f"[{stem}](notebooks/{name})" if (NOTEBOOK_DIR / name).is_file() else stem


def machine_line(results: dict) -> str:
    m = results["machine"]
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU"
    return (f"{m['cpu']}, {m['cores_usable']} of {m['cores']} cores usable, torch {m['torch']} "
            f"({m['torch_threads']} torch threads){gpu}, Python {m['python']}")


def markdown_table(results: dict) -> str:
    """The course map's timing table (one row per notebook) with the machine, date and profile above it."""
    by_nb: dict[str, dict[str, dict]] = {}
    for r in results["runs"]:
        by_nb.setdefault(r["notebook"], {})[r["pass"]] = r
    shared = any(r["shared"] for r in results["runs"])
    lines = [
        f"Measured by `benchmarks/notebooks.py` in the **{results['profile']}** profile on {results['date'] if ' to ' in results['date'] else results['date'][:10]} "
        f"(UTC): {machine_line(results)}. Cold: a fresh model cache (decoded data arrays reused); warm: "
        f"the same cache again.",
        "",
    ]
    if shared:
        lines += ["**Shared CPU:** other processes were running during the runs marked *shared* (1-minute load "
                  f"average above {BUSY_LOAD} before the start, or other processes using more than "
                  f"{BUSY_FOREIGN_CORES} cores on average during the run): these times overstate an idle machine's.", ""]
    lines += ["| notebook | cold | warm | slowest cells, cold run (s, cell) | status | machine |",
              "| --- | --- | --- | --- | --- | --- |"]
    for name, runs in by_nb.items():
        cold, warm = runs.get("cold"), runs.get("warm")
        slow = "; ".join(f"{c['seconds']:.0f} s #{c['index']}" for c in (cold or warm or {}).get("slowest_cells", []))
        status = "; ".join(f"{p}: {r['status']}" for p, r in runs.items() if r["status"] != "ok") or "ok"
        status = status.replace("|", "\\|")
        flags = [f"{p} shared (load {r['load_before']} before, others {r['foreign_cpu_cores']} cores)"
                 for p, r in runs.items() if r["shared"]]
        lines.append(f"| {link(name)} | {duration(cold and cold['wall_s'])} | {duration(warm and warm['wall_s'])} "
                     f"| {slow} | {status} | {'; '.join(flags) or 'idle'} |")
    return "\n".join(lines) + "\n"


def merge_results(results_list: list[dict]) -> dict:
    """One results object from several saved runs (``--table-from``): for each notebook and pass the run
    of the latest file that has it, rows in course order. Refuses to mix profiles or machines: a course
    map is one machine's table. The date becomes the range of the files' dates."""
    if not results_list:
        raise ValueError("no results to merge")
    first = results_list[0]
    for r in results_list[1:]:
        if r["profile"] != first["profile"]:
            raise ValueError(f"cannot merge profiles {first['profile']!r} and {r['profile']!r}")
        if machine_line(r) != machine_line(first):
            raise ValueError(f"cannot merge runs from two machines: {machine_line(first)!r} and {machine_line(r)!r}")
    runs: dict[tuple[str, str], dict] = {}
    for r in results_list:
        for run in r["runs"]:
            runs[(run["notebook"], run["pass"])] = run
    order = {relative_name(p): i for i, p in enumerate(course_notebooks())}
    dates = sorted(r["date"][:10] for r in results_list)
    merged = dict(results_list[-1], date=dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}",
                  merged_from=[r["date"] for r in results_list])
    merged["runs"] = sorted(runs.values(), key=lambda run: (order.get(run["notebook"], len(order)), run["notebook"],
                                                           PASSES.index(run["pass"])))
    return merged


def write_json(path: Path, results: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, path)


# --- main -----------------------------------------------------------------------------------------

def main(argv=None):
    global SETTLE_MAX_S
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: the whole course, in course order")
    parser.add_argument("--profile", default="quick", choices=["smoke", "quick", "full"])
    parser.add_argument("--passes", nargs="+", default=list(PASSES), choices=PASSES)
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument("--json-out", type=Path, default=None,
                        help="results file (default: KEEP/results.json, else cache_dir()/benchmarks/notebooks_<profile>.json)")
    parser.add_argument("--table-out", type=Path, default=None, help="markdown table file (also KEEP/course_map.md)")
    parser.add_argument("--keep-outputs", type=Path, default=None, help="folder for the executed notebooks (cold run)")
    parser.add_argument("--data-cache", type=Path, default=None,
                        help="where the decoded data arrays come from (default: the course's cache_dir())")
    parser.add_argument("--prepare-data", action=argparse.BooleanOptionalAction, default=True,
                        help="decode the data arrays into --data-cache first when missing (default: on)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="folder for the per-notebook caches (default: a temporary folder, removed at the end)")
    parser.add_argument("--table-from", nargs="+", type=Path, default=None, metavar="RESULTS_JSON",
                        help="run nothing: build the table from saved results files of one machine (for each "
                             "notebook and pass, the latest file's run), print it and write --table-out / --json-out")
    parser.add_argument("--settle-max", type=float, default=SETTLE_MAX_S, metavar="SECONDS",
                        help="before each run, wait at most this long for the load average to settle (default "
                             f"{SETTLE_MAX_S:g}; 0 for tests, where no time is reported)")
    args = parser.parse_args(argv)
    SETTLE_MAX_S = args.settle_max
    if args.table_from:
        merged = merge_results([json.loads(f.read_text()) for f in args.table_from])
        table = markdown_table(merged)
        print(table)
        if args.table_out:
            args.table_out.parent.mkdir(parents=True, exist_ok=True)
            args.table_out.write_text(table)
        if args.json_out:
            write_json(args.json_out, merged)
        return 0 if all(r["status"] == "ok" for r in merged["runs"]) else 1
    if args.passes not in (["cold"], ["cold", "warm"], ["warm"]):
        parser.error("--passes is 'cold', 'cold warm', or 'warm' (a warm run needs the cold run before it)")
    if args.passes == ["warm"] and args.work_dir is None:
        parser.error("--passes warm needs --work-dir: the folder of a cold run's per-notebook caches")

    sys.path.insert(0, str(REPO))
    from course_utils.config import cache_dir

    notebooks = [p.resolve() for p in args.notebooks] or course_notebooks()
    for p in notebooks:
        if not p.is_file():
            parser.error(f"no notebook {p}")
    data_cache = (args.data_cache or cache_dir()).resolve()
    keep = args.keep_outputs.resolve() if args.keep_outputs else None
    json_out = args.json_out or (keep / "results.json" if keep else cache_dir() / "benchmarks" / f"notebooks_{args.profile}.json")
    results = {"schema": 1, "profile": args.profile, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": machine_info(), "passes": args.passes, "data_cache": str(data_cache),
               "design": "cold: a fresh COURSE_CACHE_DIR holding only the decoded data arrays (top-level *.npz and "
                         "sidecars of data_cache); warm: the same cache again",
               "thresholds": {"load_before": BUSY_LOAD, "foreign_cpu_cores": BUSY_FOREIGN_CORES}, "runs": []}
    work = args.work_dir.resolve() if args.work_dir else Path(tempfile.mkdtemp(prefix="course_map_"))
    caches = {path: work / re.sub(r"\W", "_", relative_name(path).removesuffix(".ipynb")) for path in notebooks}
    if args.passes == ["warm"]:
        missing = [relative_name(p) for p, c in caches.items() if not c.is_dir()]
        if missing:
            parser.error(f"--passes warm: no cold run's cache in {work} for {', '.join(missing)}")
    elif args.prepare_data and not data_arrays(data_cache):
        print(f"decoding the data arrays into {data_cache} (not timed as part of any notebook) ...", flush=True)
        results["prepare_data"] = prepare_data_arrays(data_cache)
        print(f"  {results['prepare_data']}", flush=True)

    try:
        for path in notebooks:
            cache = caches[path]
            if args.passes[0] == "cold":
                reused = fresh_cache(cache, data_cache)
            else:  # warm only: the cache a cold run left (kept with --work-dir), as it is
                reused = [p.name for p in data_arrays(cache)]
            for pass_name in args.passes:
                record, nb = run_notebook(path, args.profile, cache, args.timeout)
                record.update({"pass": pass_name, "data_arrays_reused": reused})
                results["runs"].append(record)
                write_json(json_out, results)
                flag = " (shared machine)" if record["shared"] else ""
                print(f"{record['notebook']} {pass_name}: {duration(record['wall_s'])}, {record['status']}{flag}", flush=True)
                if keep is not None and pass_name == "cold":
                    nb.metadata["course_run"] = {k: record[k] for k in ("profile", "pass", "started", "wall_s", "status", "shared")}
                    nb.metadata["course_run"]["machine"] = machine_line(results)
                    target = keep / relative_name(path)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    nbformat.write(nb, target)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    table = markdown_table(results)
    print(table)
    for out in [args.table_out, keep / "course_map.md" if keep else None]:
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(table)
    if keep is not None and json_out != keep / "results.json":
        write_json(keep / "results.json", results)
    return 0 if all(r["status"] == "ok" for r in results["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
