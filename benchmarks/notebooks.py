"""Run notebooks top to bottom in a profile and report wall time (total and slowest cells).

    COURSE_DATA_DIR=../shared/data python benchmarks/notebooks.py --profile quick notebooks/03_attacks_fgsm_pgd.ipynb

Outputs are written to a temporary folder (never into notebooks/). Prints a markdown table.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def run(path: Path, profile: str, timeout: int, keep: Path | None):
    nb = nbformat.read(path, as_version=4)
    os.environ["COURSE_PROFILE"] = profile
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    times, t0, error = [], time.time(), ""
    try:
        with client.setup_kernel():
            for i, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                c0 = time.time()
                client.execute_cell(cell, i)
                times.append((time.time() - c0, i, cell.source.splitlines()[0][:60] if cell.source else ""))
    except Exception as e:  # report, keep going with the next notebook
        error = f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
    total = time.time() - t0
    if keep is not None:
        nbformat.write(nb, keep / path.name)
    return total, sorted(times, reverse=True)[:3], error


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--profile", default="quick", choices=["smoke", "quick", "full"])
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument("--keep-outputs", type=Path, default=None, help="folder to save executed copies in")
    args = parser.parse_args()
    keep = args.keep_outputs
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    print("| notebook | profile | wall time (s) | slowest cells (s, cell) | status |\n|---|---|---|---|---|")
    for path in args.notebooks:
        total, slow, error = run(path, args.profile, args.timeout, keep)
        slow_s = "; ".join(f"{t:.0f} s #{i}" for t, i, _ in slow)
        print(f"| {path.name} | {args.profile} | {total:.0f} | {slow_s} | {error or 'ok'} |", flush=True)


if __name__ == "__main__":
    main()
