"""benchmarks/sanitization.py (issue 12, item 3: the README's sanitization table) runs in the smoke profile.

It must print the MNIST and CIFAR-10 rows of the README table, the pixel measurement behind 1-bit
squeezing and a bypass verdict for every adaptive and high-confidence row, so it cannot rot between the
quick runs that fill the README. Nothing here is timed for publication; the smoke numbers mean nothing.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_sanitization_benchmark_smoke_prints_every_row_and_verdict(tmp_path):
    env = {**os.environ, "COURSE_PROFILE": "smoke", "COURSE_CACHE_DIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "sanitization.py")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    for row in ("| FGSM eps=0.3 |", "| CW-L2 confidence 0 (", "| CW-L2 confidence 10 (", "| adaptive PGD-5 x1 eps=0.3 |",
                "| [CIFAR-10] PGD-5 eps=8/255 |", "| [CIFAR-10] adaptive PGD-5 x1 eps=8/255 |", "| [MagNet detector] PGD-5 |"):
        assert row in out, row
    assert "pixels an L-inf change can move to another squeezed level: MNIST 1 bit, eps 0.3:" in out
    verdicts = [line for line in out.splitlines() if line.strip().startswith(("BYPASS: SHOWN", "BYPASS: NOT RESOLVED", "BYPASS: CONTRADICTED"))]
    assert len(verdicts) == 5, verdicts  # 2 CW confidences, MNIST adaptive at 0.3 and 0.5, CIFAR-10 adaptive
    assert "detected 95% CI" in out
