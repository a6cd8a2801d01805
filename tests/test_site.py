"""The rendered course (benchmarks/build_site.py, Jupyter Book 1), built offline from notebooks 00 and 02.

The ``built_site`` fixture (conftest.py) runs notebooks 00 and 02 with ``benchmarks/notebooks.py``
in the smoke profile and builds the site from its ``--keep-outputs`` folder. Checked here: a page per
notebook, every figure of each notebook rendered on its page (an ``<img>`` whose PNG is inline or a
file that exists), the home page is the course map table with links to the pages, and each page says
which run its outputs come from. Skipped (with the reason) where jupyter-book 1.x is not installed.
"""
import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]

PNG = b"\x89PNG\r\n\x1a\n"


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs).get("src") or "")


def rendered_figures(page: Path) -> list[str]:
    """The ``<img>`` sources of an HTML page whose PNG is really there: inline (``data:image/png;base64``)
    or a file next to the page that starts with the PNG signature."""
    parser = _Images()
    parser.feed(page.read_text(encoding="utf-8"))
    found = []
    for src in parser.srcs:
        if src.startswith("data:image/png;base64,"):
            try:
                ok = base64.b64decode(src.split(",", 1)[1], validate=True).startswith(PNG)
            except ValueError:
                ok = False
        elif src and not re.match(r"^[a-z]+:", src):
            f = page.parent / src.split("#")[0].split("?")[0]
            ok = f.is_file() and f.read_bytes()[:8] == PNG
        else:
            ok = False
        if ok:
            found.append(src)
    return found


def _png_outputs(nb_path: Path) -> int:
    nb = json.loads(nb_path.read_text())
    return sum("image/png" in o.get("data", {}) for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"])


def test_rendered_figures_rejects_missing_and_broken_images(tmp_path):
    """The figure check must fail on a page whose image is missing, empty, not a PNG, or remote."""
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "good.png").write_bytes(PNG + b"rest")
    (tmp_path / "img" / "empty.png").write_bytes(b"")
    good_inline = "data:image/png;base64," + base64.b64encode(PNG + b"x").decode()
    page = tmp_path / "page.html"
    page.write_text('<p><img src="img/missing.png"><img src="img/empty.png"><img src="https://x.org/a.png">'
                    '<img src="data:image/png;base64,AAAA"><img alt="no src"></p>')
    assert rendered_figures(page) == []
    page.write_text(f'<img src="img/good.png"><img src="{good_inline}">')
    assert rendered_figures(page) == ["img/good.png", good_inline]


@pytest.mark.slow
def test_a_page_per_notebook_with_its_figures(built_site):
    executed, html, seconds = built_site
    notebooks = sorted(executed.glob("*.ipynb"))
    assert [p.name for p in notebooks] == ["00_setup_and_course_map.ipynb", "02_adversarial_examples_foundations.ipynb"]
    with_plots = 0
    for nb in notebooks:
        page = html / f"{nb.stem}.html"
        assert page.is_file(), f"no page for {nb.name}"
        n_png = _png_outputs(nb)
        figures = rendered_figures(page)
        assert len(figures) >= n_png, f"{page.name}: {len(figures)} rendered figures for {n_png} PNG outputs"
        with_plots += n_png > 0
        text = page.read_text(encoding="utf-8")
        assert "profile" in text and "smoke" in text, f"{page.name} does not say which run its outputs come from"
        assert "Traceback" not in text
    assert with_plots == 2  # both draw figures in the smoke profile
    print(f"site built in {seconds:.1f} s (shared CPU)")


class _Rows(HTMLParser):
    """The rows of an HTML page's tables: (cell texts, hrefs) per <tr>."""

    def __init__(self):
        super().__init__()
        self.rows, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append(([], []))
        elif tag in ("td", "th") and self.rows:
            self._cell = ""
        elif tag == "a" and self.rows and self._cell is not None:
            self.rows[-1][1].append(dict(attrs).get("href", ""))

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1][0].append(" ".join(self._cell.split()))
            self._cell = None


@pytest.mark.slow
def test_home_page_is_the_course_map(built_site):
    executed, html, _ = built_site
    table = (executed / "course_map.md").read_text()
    parser = _Rows()
    parser.feed((html / "index.html").read_text(encoding="utf-8"))
    rows = {cells[0]: (cells, hrefs) for cells, hrefs in parser.rows if cells}
    header = [line for line in table.splitlines() if line.startswith("| notebook |")][0]
    assert rows["notebook"][0] == [c.strip() for c in header.strip("|").split("|")]
    for nb in sorted(executed.glob("*.ipynb")):
        line = next(line for line in table.splitlines() if line.startswith(f"| [{nb.stem}]"))
        expected = [c.strip() for c in line.strip("|").split("|")][1:]  # cold, warm, slowest cells, status, machine
        assert nb.stem in rows, f"the home page's table has no row for {nb.stem}"
        cells, hrefs = rows[nb.stem]
        assert hrefs == [f"{nb.stem}.html"], f"{nb.stem}: the row links {hrefs}, not its page"
        assert cells[1:] == [c.replace("\\|", "|") for c in expected], (cells, expected)
