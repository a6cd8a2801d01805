"""The classroom round trip with nbgrader, on a temporary course folder (issue 13, item 3).

What an instructor runs (README, "Classroom: the nbgrader round trip"): ``generate_assignment`` on the
course's notebooks, ``release_assignment``, the students' ``fetch_assignment`` and ``submit``,
``collect``, ``autograde``, ``generate_feedback`` and ``export``. Two students submit: one hands in
the instructor's solution notebooks (full marks expected), the other the released student version
untouched (zero on every graded cell expected). Autograding executes two cheap lessons (02 and 07)
in the smoke profile.

The fast tests keep the course's own tool, ``checks.strip_solutions``, identical to nbgrader's
``ClearSolutions`` on every cell, and the notebooks inside the rules nbgrader enforces.
"""
import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

pytest.importorskip("nbgrader", reason="nbgrader is in the dev extra: pip install -e '.[dev]'")
from nbgrader.api import Gradebook  # noqa: E402
from nbgrader.preprocessors import ClearSolutions  # noqa: E402

from course_utils.checks import strip_solutions  # noqa: E402

ROOT = Path(__file__).parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
LAB = ["02_adversarial_examples_foundations", "07_randomized_smoothing"]  # seconds each in smoke
COURSE_ID = "adv-defense"
MARKER = re.compile(r"(BEGIN|END) SOLUTION")


def _nbgrader(meta):
    return meta.get("nbgrader", {})


def _clear_solutions(source, cell_type="code"):
    """nbgrader's own student version of one solution cell."""
    cell = (nbformat.v4.new_code_cell if cell_type == "code" else nbformat.v4.new_markdown_cell)(source)
    cell.metadata["nbgrader"] = {"solution": True, "grade": False, "grade_id": "x", "locked": False,
                                 "schema_version": 3, "task": False}
    cell, _ = ClearSolutions().preprocess_cell(cell, {"language": "python"}, 0)
    return cell.source


# --- the notebooks follow nbgrader's rules, and strip_solutions is nbgrader's behaviour ---------------

@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_markers_only_in_solution_cells(nb_path):
    """nbgrader refuses a marker outside a solution cell, and replaces a solution cell without markers
    whole; every graded cell carries points."""
    nb = nbformat.read(nb_path, as_version=4)
    ids = []
    for i, cell in enumerate(nb.cells):
        meta = _nbgrader(cell.metadata)
        if meta.get("solution"):
            assert "BEGIN SOLUTION" in cell.source and "END SOLUTION" in cell.source, f"cell {i}: solution cell without markers"
        else:
            assert not MARKER.search(cell.source), f"cell {i}: a solution marker outside a solution cell (nbgrader refuses it)"
        if meta.get("grade"):
            assert float(meta["points"]) > 0, f"cell {i}: a graded cell without points"
        if meta:
            ids.append(meta["grade_id"])
    assert len(ids) == len(set(ids)), f"duplicate grade_id in {nb_path.name}"


SOLUTION_CELLS = [pytest.param(c.source, c.cell_type, id=f"{p.stem}:{_nbgrader(c.metadata)['grade_id']}")
                  for p in NOTEBOOKS for c in nbformat.read(p, as_version=4).cells if _nbgrader(c.metadata).get("solution")]
EDGE_CASES = [
    pytest.param("def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n\nprint(f)\n", "code", id="indented"),
    pytest.param("### BEGIN SOLUTION\ny = 1\n### END SOLUTION", "code", id="whole-cell"),
    pytest.param("a = 1  ### BEGIN SOLUTION\nb = 2\n### END SOLUTION  trailing\nc = 3", "code", id="code-on-marker-lines"),
    pytest.param("### BEGIN SOLUTION\na\n### END SOLUTION\nx = 0\n### END SOLUTION\ny = 1", "code", id="stray-end"),
    pytest.param("if t:\n    ## BEGIN SOLUTION\n    a\n    ## END SOLUTION\nelse:\n\t### BEGIN SOLUTION\n\tb\n\t### END SOLUTION", "code",
                 id="two-regions"),
    pytest.param("Why?\n\n=== BEGIN SOLUTION ===\nBecause.\n=== END SOLUTION ===", "markdown", id="markdown"),
]


@pytest.mark.parametrize("source,cell_type", SOLUTION_CELLS + EDGE_CASES)
def test_strip_solutions_is_nbgraders(source, cell_type):
    assert strip_solutions(source, cell_type) == _clear_solutions(source, cell_type)


@pytest.mark.parametrize("source", ["### BEGIN SOLUTION\nx = 1", "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION"])
def test_strip_solutions_refuses_what_nbgrader_refuses(source):
    with pytest.raises(RuntimeError):
        _clear_solutions(source)
    with pytest.raises(ValueError, match="BEGIN SOLUTION"):
        strip_solutions(source)


# --- the round trip -----------------------------------------------------------------------------------

def nbgrader_config(exchange: Path, timeout: int = 600) -> str:
    """The course folder's nbgrader_config.py (the README shows the same lines)."""
    return (f'c = get_config()\nc.CourseDirectory.course_id = "{COURSE_ID}"\n'
            f'c.Exchange.root = "{exchange.as_posix()}"\nc.Execute.timeout = {timeout}  # seconds per cell\n')


def run_nbgrader(*args, cwd, env=None, timeout=600):
    """``python -m nbgrader ...`` with this interpreter; its scripts folder first on PATH (nbgrader calls
    ``alembic`` for its database)."""
    env = dict(os.environ if env is None else env)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A course folder with two assignments: ``all`` (every notebook) and ``lab`` (lessons 02 and 07)."""
    tmp = tmp_path_factory.mktemp("classroom")
    root, exchange = tmp / COURSE_ID, tmp / "exchange"
    exchange.mkdir()
    (root / "source" / "all").mkdir(parents=True)
    (root / "source" / "lab").mkdir()
    (root / "nbgrader_config.py").write_text(nbgrader_config(exchange, timeout=300))  # smoke cells take seconds
    for p in NOTEBOOKS:
        shutil.copy(p, root / "source" / "all" / p.name)
        if p.stem in LAB:
            shutil.copy(p, root / "source" / "lab" / p.name)
    run_nbgrader("generate_assignment", "all", cwd=root)
    return root


def test_released_notebooks_have_no_solution_code(course):
    released = sorted((course / "release" / "all").glob("*.ipynb"))
    assert [p.name for p in released] == sorted(p.name for p in NOTEBOOKS)
    stubs = regions = 0
    for path in released:
        source = nbformat.read(course / "source" / "all" / path.name, as_version=4)
        student = nbformat.read(path, as_version=4)
        assert len(student.cells) == len(source.cells)
        for i, (src, out) in enumerate(zip(source.cells, student.cells)):
            assert not MARKER.search(out.source), f"{path.name} cell {i}: a solution marker survived"
            if _nbgrader(src.metadata).get("solution"):
                assert out.source == strip_solutions(src.source, src.cell_type), f"{path.name} cell {i}"
                bodies = re.findall(r"BEGIN SOLUTION[^\n]*\n(.*?)\n[^\n]*END SOLUTION", src.source, re.S)
                solution_lines = {ln.strip() for body in bodies for ln in body.split("\n")}
                kept = {ln.strip() for ln in out.source.split("\n")}
                leaked = {ln for ln in solution_lines & kept if ln and not ln.startswith("#")}
                assert not leaked, f"{path.name} cell {i}: solution lines in the student version: {leaked}"
                stubs += out.source.count("raise NotImplementedError()")
                regions += src.source.count("BEGIN SOLUTION")
            else:
                assert out.source == src.source, f"{path.name} cell {i}: a cell without a solution changed"
            if out.cell_type == "code":
                assert not out.outputs and out.execution_count is None
    assert stubs == regions >= len(released)


@pytest.mark.slow  # executes two notebooks per student (about a minute on a shared 2-core CPU)
def test_autograde_full_marks_for_the_solution_zero_for_the_blank_version(course, tmp_path):
    env = {**os.environ, "COURSE_PROFILE": "smoke"}
    exchange = f"--Exchange.root={course.parent / 'exchange'}"
    run_nbgrader("generate_assignment", "lab", cwd=course)
    run_nbgrader("release_assignment", "lab", cwd=course)
    for student in ("alice", "bob"):
        home = tmp_path / student
        home.mkdir()
        run_nbgrader("fetch_assignment", "lab", f"--course={COURSE_ID}", exchange, cwd=home)
        fetched = sorted(p.name for p in (home / "lab").glob("*.ipynb"))
        assert fetched == sorted(f"{stem}.ipynb" for stem in LAB)
        if student == "alice":  # hands in the instructor's solutions
            for name in fetched:
                shutil.copy(course / "source" / "lab" / name, home / "lab" / name)
        run_nbgrader("submit", "lab", f"--course={COURSE_ID}", f"--student={student}", exchange, cwd=home)
    run_nbgrader("collect", "lab", cwd=course)
    run_nbgrader("autograde", "lab", cwd=course, env=env, timeout=1200)
    run_nbgrader("generate_feedback", "lab", cwd=course)
    run_nbgrader("export", cwd=course)

    graded = {(stem, _nbgrader(c.metadata)["grade_id"]): float(_nbgrader(c.metadata)["points"])
              for stem in LAB for c in nbformat.read(course / "source" / "lab" / f"{stem}.ipynb", as_version=4).cells
              if _nbgrader(c.metadata).get("grade")}
    grades = {row["student_id"]: row for row in csv.DictReader((course / "grades.csv").open())}
    assert float(grades["alice"]["score"]) == float(grades["alice"]["max_score"]) == sum(graded.values()), grades["alice"]
    assert float(grades["bob"]["score"]) == 0.0, grades["bob"]
    assert all((course / "feedback" / student / "lab" / f"{stem}.html").exists() for student in grades for stem in LAB)

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        scores = {student: {(nb.name, g.name): (g.auto_score, g.max_score) for nb in gb.find_submission("lab", student).notebooks
                            for g in nb.grades} for student in ("alice", "bob")}
    assert set(scores["alice"]) == set(scores["bob"]) == set(graded) and len(graded) >= 4
    assert all(scores["alice"][key] == (points, points) for key, points in graded.items()), scores["alice"]
    assert all(score == 0 for score, _ in scores["bob"].values()), scores["bob"]

    for name in (f"{stem}.ipynb" for stem in LAB):  # bob's zeros come from the checks, not from a crash
        autograded = nbformat.read(course / "autograded" / "bob" / "lab" / name, as_version=4)
        for cell in autograded.cells:
            if _nbgrader(cell.metadata).get("grade"):
                text = "".join(o.get("text", "") for o in cell.outputs)
                assert "not implemented yet" in text, f"{name} {_nbgrader(cell.metadata)['grade_id']}: {cell.outputs}"
