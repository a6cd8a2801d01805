"""environment.yml (conda) and pyproject.toml (pip) must name the same packages."""
import re
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).parents[1]
CONDA_TO_PIP = {"pytorch": "torch", "redis-py": "redis"}  # conda-forge names that differ from PyPI's (conda-forge's "redis" is the server)


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_conda_and_pip_dependencies_match():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_names = {_name(r) for r in project["dependencies"]}
    pip_names |= {_name(r) for extra in project["optional-dependencies"].values() for r in extra}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_names = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            conda_names |= {_name(r) for r in dep["pip"] if not r.startswith("-")}
        elif _name(dep) not in {"python", "pip"}:
            conda_names.add(CONDA_TO_PIP.get(_name(dep), _name(dep)))
    assert conda_names == pip_names, (
        f"only in environment.yml: {sorted(conda_names - pip_names)}; only in pyproject.toml: {sorted(pip_names - conda_names)}"
    )


def test_ranges_admit_the_pinned_torch():
    """The machines this course is tested on cap torch at 2.14.1 and torchvision at 0.29.1."""
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = {Requirement(r).name: Requirement(r) for r in project["dependencies"]}
    assert "2.14.1" in reqs["torch"].specifier and "0.29.1" in reqs["torchvision"].specifier
