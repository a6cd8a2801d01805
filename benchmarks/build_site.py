"""The rendered course: the executed notebooks of the course-map benchmark as a static HTML site.

    python benchmarks/notebooks.py --keep-outputs site/executed     # runs the course (quick profile)
    python benchmarks/build_site.py --executed site/executed --out site/   # builds the site, offline
    # then open site/_build/html/index.html (or: python -m http.server -d site/_build/html)

The tool is Jupyter Book 1 (Sphinx with MyST-NB and the Sphinx Book Theme, ``jupyter-book`` 1.x on
PyPI, in the ``dev`` extra): it builds without a network. Jupyter Book 2 / the MyST CLI (``mystmd``)
fetches its book theme from the network at build time, so it cannot build offline.

The home page is the course map: the table ``benchmarks/notebooks.py`` wrote (``--table``, default
``EXECUTED/course_map.md``), its links pointing at the pages. Then one page per executed notebook
(``EXECUTED/*.ipynb``, then ``EXECUTED/projects/*.ipynb``, in course order) with its outputs,
figures and printed tables exactly as the benchmark's run left them: the notebooks are never
executed here (``execute_notebooks: off``), and a line under each title says in which profile and on
which machine they ran (the ``course_run`` metadata the benchmark writes). ``notebooks/`` is not
touched. The book's source goes to ``OUT/_source`` and the HTML to ``OUT/_build/html``; both are
build artefacts (``site/`` is git-ignored). Pages load MathJax and the widget manager from a CDN when
viewed, so offline the formulas show as TeX and the widgets as their text fallback; figures and
tables are part of the pages.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]


def executed_notebooks(folder: Path) -> list[Path]:
    """The executed notebooks in course order: lessons, then ``projects/``."""
    return sorted(folder.glob("*.ipynb")) + sorted((folder / "projects").glob("*.ipynb"))


def course_title() -> str:
    for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return "The course"


def home_page(table: str, title: str) -> str:
    """index.md: the course map table, its ``notebooks/...ipynb`` links made relative to the site."""
    table = re.sub(r"\]\(notebooks/([^)]+\.ipynb)\)", r"](\1)", table)
    return (f"# {title}\n\n## Course map\n\nEach page below is a notebook of the course with the outputs of one "
            f"top-to-bottom run by `benchmarks/notebooks.py` (nothing edited by hand).\n\n{table}")


def run_note(nb) -> str | None:
    run = nb.metadata.get("course_run")
    if not run:
        return None
    shared = " on a shared machine" if run.get("shared") else ""
    return (f"*Outputs from a {run.get('pass', '')} run in the **{run.get('profile')}** profile, "
            f"{run.get('started', '')[:10]}{shared} ({run.get('machine', '')}): {run.get('wall_s')} s, "
            f"status {run.get('status')}.*")


def write_source(executed: Path, table_file: Path, src: Path) -> list[str]:
    """The book's source folder: _config.yml, _toc.yml, index.md and the notebooks; return the pages."""
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    pages = []
    for path in executed_notebooks(executed):
        rel = path.relative_to(executed)
        nb = nbformat.read(path, as_version=4)
        note = run_note(nb)
        if note:  # under the title cell, so the page keeps the notebook's own title
            at = 1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0
            nb.cells.insert(at, nbformat.v4.new_markdown_cell(note))
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, src / rel)
        pages.append(rel.with_suffix("").as_posix())
    title = course_title()
    (src / "index.md").write_text(home_page(table_file.read_text(encoding="utf-8"), title), encoding="utf-8")
    lessons = [p for p in pages if not p.startswith("projects/")]
    projects = [p for p in pages if p.startswith("projects/")]
    toc = ["format: jb-book", "root: index", "parts:"]
    for caption, group in (("Lessons", lessons), ("Projects", projects)):
        if group:
            toc += [f"  - caption: {caption}", "    chapters:"] + [f"      - file: {p}" for p in group]
    (src / "_toc.yml").write_text("\n".join(toc) + "\n", encoding="utf-8")
    (src / "_config.yml").write_text(
        f'title: "{title}"\n'
        "only_build_toc_files: true\n"
        "execute:\n  execute_notebooks: \"off\"  # the outputs are the benchmark run's\n"
        "html:\n  home_page_in_navbar: true\n  use_repository_button: false\n"
        "sphinx:\n  config:\n    html_show_copyright: false\n    html_last_updated_fmt: null\n",
        encoding="utf-8")
    return pages


def jupyter_book_command() -> list[str] | None:
    """``jupyter-book`` (1.x) beside this interpreter, else on PATH; None when it is not installed."""
    try:
        import jupyter_book
    except ImportError:
        return None
    if not jupyter_book.__version__.startswith("1."):
        raise SystemExit(f"jupyter-book {jupyter_book.__version__} is installed; this build needs 1.x (pip install -e '.[dev]')")
    here = Path(sys.executable).parent / "jupyter-book"
    found = str(here) if here.exists() else shutil.which("jupyter-book")
    return [found] if found else None


def build(executed: Path, out: Path, table: Path | None = None) -> Path:
    """Write the source under ``out/_source``, build it into ``out/_build/html``; return index.html."""
    executed, out = Path(executed).resolve(), Path(out).resolve()
    table = Path(table) if table else executed / "course_map.md"
    if not executed_notebooks(executed):
        raise SystemExit(f"no executed notebooks in {executed}: run benchmarks/notebooks.py --keep-outputs {executed} first")
    if not table.is_file():
        raise SystemExit(f"no course map table {table}: benchmarks/notebooks.py --keep-outputs writes one (or pass --table)")
    cmd = jupyter_book_command()
    if cmd is None:
        raise SystemExit("jupyter-book 1.x is not installed: pip install -e '.[dev]'")
    pages = write_source(executed, table, out / "_source")
    html = out / "_build" / "html"
    if html.exists():
        shutil.rmtree(html)
    t0 = time.time()
    proc = subprocess.run(cmd + ["build", str(out / "_source"), "--path-output", str(out), "--builder", "html"],
                          capture_output=True, text=True)
    (out / "build.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0 or not (html / "index.html").is_file():
        raise SystemExit(f"jupyter-book build failed ({proc.returncode}); log in {out / 'build.log'}:\n{(proc.stdout + proc.stderr)[-3000:]}")
    missing = [p for p in pages if not (html / f"{p}.html").is_file()]
    if missing:
        raise SystemExit(f"pages missing from the build: {missing}; log in {out / 'build.log'}")
    print(f"built {len(pages)} pages in {time.time() - t0:.0f} s: {html / 'index.html'}")
    return html / "index.html"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executed", type=Path, default=REPO / "site" / "executed",
                        help="the --keep-outputs folder of benchmarks/notebooks.py (default: site/executed)")
    parser.add_argument("--out", type=Path, default=REPO / "site", help="output folder (default: site/)")
    parser.add_argument("--table", type=Path, default=None, help="the course map table (default: EXECUTED/course_map.md)")
    args = parser.parse_args(argv)
    build(args.executed, args.out, args.table)


if __name__ == "__main__":
    main()
