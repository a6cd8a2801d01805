"""Exercise checks: compare a learner's function with the reference on seeded inputs.

Each ``check_*`` prints the relative error against a stated tolerance and raises
``AssertionError`` when the learner's answer is off (or not written yet), so an autograder or
nbval sees the failure. A ``check_*`` returns ``None``: a check cell displays nothing, because
nbgrader reads a number displayed by an autograded cell as partial credit (a displayed relative
error of 0.0 would score zero points). Checks build their own small seeded inputs, so a check cell
needs nothing from the rest of the notebook. ``strip_solutions`` makes the student version of a
cell exactly as ``nbgrader generate_assignment`` does (``tests/test_nbgrader_roundtrip.py``
compares the two).

The checks of each topic live in a submodule (``checks.attacks.check_fgsm`` ...); the generic
comparison tools are here.
"""
from __future__ import annotations

import re

import torch

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"  # the markers the course writes
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"  # nbgrader's ClearSolutions.code_stub (python)
TEXT_STUB = "YOUR ANSWER HERE"  # nbgrader's ClearSolutions.text_stub (markdown cells)


def rel_error(a, b) -> float:
    """max |a - b| / max(|a| + |b|, 1e-8), elementwise (cs231n's rel_error)."""
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    if a.shape != b.shape:
        raise AssertionError(f"shape mismatch: got {tuple(a.shape)}, expected {tuple(b.shape)}")
    return float(((a - b).abs() / (a.abs() + b.abs()).clamp_min(1e-8)).max()) if a.numel() else 0.0


def call_learner(name: str, fn, *args):
    """``fn(*args)``; a learner function that is not written yet (``NotImplementedError``, as in the
    stripped student version) becomes a failed check with a hint instead of a traceback."""
    try:
        return fn(*args)
    except NotImplementedError:
        print(f"[{name}] not implemented yet: write the function above, then run this cell again")
        raise AssertionError(f"{name}: not implemented") from None


def compare(name: str, learner_fn, reference_fn, make_inputs, tol: float = 1e-5, trials: int = 3, seed: int = 0) -> float:
    """Run both functions on ``make_inputs(generator)`` for a few seeds; assert rel. error <= tol."""
    worst = 0.0
    for t in range(trials):
        args = make_inputs(torch.Generator().manual_seed(seed + t))
        got = call_learner(name, learner_fn, *args)
        expected = reference_fn(*args)
        got = got.detach() if isinstance(got, torch.Tensor) else got
        worst = max(worst, rel_error(got, expected))
    ok = worst <= tol
    print(f"[{name}] relative error {worst:.2e} (tolerance {tol:.0e}): {'PASSED' if ok else 'FAILED'}")
    if not ok:
        raise AssertionError(f"{name}: relative error {worst:.2e} > tolerance {tol:.0e}")
    return worst


def check_value(name: str, got, expected, tol: float = 1e-6) -> float:
    """Compare one value (number or tensor) with the expected one."""
    err = rel_error(got, expected)
    ok = err <= tol
    print(f"[{name}] relative error {err:.2e} (tolerance {tol:.0e}): {'PASSED' if ok else 'FAILED'}")
    if not ok:
        raise AssertionError(f"{name}: got {got}, expected {expected}")
    return err


def strip_solutions(source: str, cell_type: str = "code") -> str:
    """The student version of a cell's source, line for line what nbgrader's ``ClearSolutions`` makes.

    Every region from a line containing ``BEGIN SOLUTION`` to the next line containing ``END
    SOLUTION`` (both lines included) becomes the stub, indented like the ``BEGIN`` line:
    ``# YOUR CODE HERE`` / ``raise NotImplementedError()`` in a code cell, ``YOUR ANSWER HERE`` in a
    markdown cell. A line containing ``END SOLUTION`` outside a region is dropped (as nbgrader does).
    A nested ``BEGIN`` or a ``BEGIN`` without its ``END`` raises ``ValueError`` (nbgrader refuses the
    notebook). nbgrader also replaces a solution cell *without* markers by the whole stub; the
    course's solution cells always have markers (``tests/test_nbgrader_roundtrip.py``).
    """
    stub = (CODE_STUB if cell_type == "code" else TEXT_STUB).split("\n")
    out, in_solution = [], False
    for line in source.split("\n"):
        if "BEGIN SOLUTION" in line:
            if in_solution:
                raise ValueError(f"nested BEGIN SOLUTION in:\n{source}")
            in_solution = True
            indent = re.match(r"\s*", line).group(0)
            out += [indent + s for s in stub]
        elif "END SOLUTION" in line:
            in_solution = False
        elif not in_solution:
            out.append(line)
    if in_solution:
        raise ValueError(f"BEGIN SOLUTION without END SOLUTION in:\n{source}")
    return "\n".join(out)


from . import attacks  # noqa: E402  (topic checks use the tools above)
from . import foundations  # noqa: E402
from . import training  # noqa: E402,F401  (adversarial training, notebooks 04-05, project p1)
from . import sanitization  # noqa: E402,F401  (input sanitization, notebook 06)
from . import certify  # noqa: E402,F401  (notebooks 07, 08, project p3)
from . import threats  # noqa: E402,F401  (notebook 01: threat models)
from . import serving  # noqa: E402,F401  (secure image API, project p4)
from . import text  # noqa: E402,F401  (sentiment API, project p2)
from . import interview  # noqa: E402,F401  (notebook 09: answers from the learner's numbers)
from . import poisoning  # noqa: E402,F401  (notebook 06b: spectral signature, removal rule, DPA certificate)
