"""Every exercise in every notebook: the reference solution passes its check, and the student
version (solution stripped as nbgrader does) fails it. Catches checks that cannot fail.

Convention (CONTRIBUTING.md): a solution cell and the check cell right after it run with only the
notebook's first code cell (imports, seed, device, profile) executed before them.
"""
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


def test_notebooks_have_exercises():
    assert EXERCISES, "no exercises found in notebooks/"


@pytest.mark.parametrize("setup,solution,check", EXERCISES)
def test_reference_solution_passes(setup, solution, check):
    _run(setup, solution, check)


@pytest.mark.parametrize("setup,solution,check", EXERCISES)
def test_student_version_fails(setup, solution, check):
    student = strip_solutions(solution)
    assert "### BEGIN SOLUTION" not in student and "NotImplementedError" in student
    with pytest.raises(AssertionError):
        _run(setup, student, check)
