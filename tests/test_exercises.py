"""Every exercise in every notebook: the reference solution passes its check, and the student
version (solution stripped as nbgrader does) fails it. Catches checks that cannot fail.

Convention (CONTRIBUTING.md): a solution cell and the check cell right after it run with only the
notebook's first code cell (imports, seed, device, profile) executed before them.

The passing check cell also displays nothing and writes nothing to stderr: nbgrader's autograder
reads a displayed number as partial credit (a displayed error of 0.0 scores zero) and any stderr
output (a warning) as a failed cell.
"""
import ast
import warnings
from pathlib import Path

import nbformat
import pytest

from course_utils.checks import strip_solutions

NOTEBOOKS = sorted(p for p in (Path(__file__).parents[1] / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def exercises():
    for nb_path in NOTEBOOKS:
        nb = nbformat.read(nb_path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        for i, cell in enumerate(code):
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("solution") and i + 1 < len(code) and code[i + 1].metadata.get("nbgrader", {}).get("grade"):
                yield pytest.param(code[0].source, cell.source, code[i + 1].source, id=f"{nb_path.stem}:{meta['grade_id']}")


EXERCISES = list(exercises())


def _run(*sources):
    namespace = {"__name__": "__exercise__"}
    for src in sources:
        exec(compile(src, "<cell>", "exec"), namespace)
    return namespace


def _run_displayed(src, namespace):
    """Run a cell as Jupyter does; return the value it would display (its last expression's value,
    None when it ends with a statement or a ';')."""
    *body, last = ast.parse(src).body
    exec(compile(ast.Module(body, type_ignores=[]), "<cell>", "exec"), namespace)
    if not isinstance(last, ast.Expr):
        exec(compile(ast.Module([last], type_ignores=[]), "<cell>", "exec"), namespace)
        return None
    value = eval(compile(ast.Expression(last.value), "<cell>", "eval"), namespace)
    return None if src.rstrip().endswith(";") else value


def test_notebooks_have_exercises():
    assert EXERCISES, "no exercises found in notebooks/"


@pytest.mark.parametrize("setup,solution,check", EXERCISES)
def test_reference_solution_passes(setup, solution, check, capfd):
    namespace = _run(setup, solution)
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        displayed = _run_displayed(check, namespace)
    assert displayed is None, f"the check cell displays {displayed!r}: nbgrader would score it as partial credit"
    assert not caught, f"the check cell warns (stderr, a failed cell for nbgrader): {[str(w.message) for w in caught]}"
    assert not capfd.readouterr().err, "the check cell writes to stderr: nbgrader would score it zero"


@pytest.mark.parametrize("setup,solution,check", EXERCISES)
def test_student_version_fails(setup, solution, check):
    student = strip_solutions(solution)
    assert "### BEGIN SOLUTION" not in student and "NotImplementedError" in student
    with pytest.raises(AssertionError):
        _run(setup, student, check)
