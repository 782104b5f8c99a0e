"""Packaging: every import is a declared dependency, shipped data is package data, one version.

The wheel itself is built, installed without TensorFlow and run on the demo by
``.ci/check-wheel``; these tests guard the declarations it depends on, without a network.
"""

import ast
import fnmatch
import functools
import importlib
import re
import sys
from pathlib import Path

import pytest

import rbvet

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]

# The distribution that provides each third-party import; "installed with" when it arrives as
# a dependency of a declared one (onnx with tf2onnx, h5py with keras).
PROVIDER = {
    "numpy": "numpy",
    "astropy": "astropy",
    "sep": "sep",
    "scipy": "scipy",
    "onnxruntime": "onnxruntime",
    "PyQt6": "pyqt6",
    "pyqtgraph": "pyqtgraph",
    "tensorflow": "tensorflow-cpu",
    "keras": "keras",
    "tf2onnx": "tf2onnx",
    "onnx": "tf2onnx",
    "h5py": "keras",
    "dask": "dask",
    "distributed": "dask",
    "matplotlib": "matplotlib",
}


def _distribution(requirement):
    """Normalised distribution name of a requirement string (no version, extras or marker)."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
    return re.sub(r"[-_.]+", "-", name).lower()


BASE = {_distribution(r) for r in PROJECT["dependencies"]}
EXTRAS = {
    extra: {_distribution(r) for r in requirements}
    for extra, requirements in PROJECT["optional-dependencies"].items()
}


class _Imports(ast.NodeVisitor):
    """Collects a file's third-party imports and whether each runs when the module is imported."""

    def __init__(self, path):
        self.path, self.depth, self.found = path, 0, []

    def visit_FunctionDef(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node):
        for alias in node.names:
            self._add(alias.name)

    def visit_ImportFrom(self, node):
        if node.level == 0:
            self._add(node.module)

    def _add(self, name):
        top = name.split(".")[0]
        if top not in sys.stdlib_module_names and top != "rbvet":
            self.found.append((top, self.depth == 0, self.path))


@functools.cache
def _third_party_imports():
    """``(module, at_import_time, file)`` for every third-party import in the rbvet package."""
    found = []
    for path in sorted((ROOT / "rbvet").rglob("*.py")):
        visitor = _Imports(path.relative_to(ROOT))
        visitor.visit(ast.parse(path.read_text(), str(path)))
        found += visitor.found
    return tuple(found)


def test_imports_at_module_level_are_in_the_base_install():
    # A module-level import of an extra would break `import rbvet...` for a base install.
    wrong = [
        (module, str(path))
        for module, at_import_time, path in _third_party_imports()
        if at_import_time and PROVIDER.get(module) not in BASE
    ]
    assert wrong == []


def test_every_import_is_declared_in_the_base_install_or_an_extra():
    declared = BASE.union(*(EXTRAS[e] for e in ("train", "batch", "plots")))
    undeclared = [
        (module, str(path))
        for module, _, path in _third_party_imports()
        if PROVIDER.get(module) not in declared
    ]
    assert undeclared == []


def test_the_base_install_leaves_training_batch_and_plots_to_extras():
    heavy = {"tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "dask", "matplotlib"}
    assert BASE & heavy == set()
    assert {"tensorflow-cpu", "tensorflow", "keras", "tf2onnx"} <= EXTRAS["train"]
    assert EXTRAS["batch"] == {"dask"}
    assert EXTRAS["plots"] == {"matplotlib"}


def test_dev_installs_every_extra_and_the_test_tools():
    dev = PROJECT["optional-dependencies"]["dev"]
    assert "rbvet[train,batch,plots]" in dev
    assert {"pytest", "pytest-qt", "hypothesis", "ruff", "stdpipe", "import-linter"} <= EXTRAS[
        "dev"
    ]


def test_the_version_has_one_source():
    assert "version" not in PROJECT
    assert "version" in PROJECT["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "rbvet.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", rbvet.__version__)


def test_license_is_mit_and_ships():
    assert PROJECT["license"] == "MIT"
    assert "LICENSE" in PROJECT["license-files"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "2026 rbvet developers" in text
    assert any(r.startswith("setuptools>=77") for r in PYPROJECT["build-system"]["requires"])


def _is_package_data(relative):
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["rbvet"]
    return any(fnmatch.fnmatch(relative, pattern) for pattern in patterns)


def test_every_shipped_resource_is_package_data():
    resources = ROOT / "rbvet" / "resources"
    files = [p for p in resources.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert files, "rbvet/resources is empty"
    left_out = [
        str(p.relative_to(ROOT / "rbvet"))
        for p in files
        if not _is_package_data(str(p.relative_to(ROOT / "rbvet")))
    ]
    assert left_out == []


@pytest.mark.parametrize(
    "relative",
    ["resources/models/rbvet_default.onnx", "resources/icons/rbvet.svg"],
)
def test_files_still_to_come_are_package_data(relative):
    assert _is_package_data(relative)


@pytest.mark.parametrize(
    ("table", "name", "target"),
    [
        ("scripts", "rbvet", "rbvet.cli:main"),
        ("gui-scripts", "rbvet-gui", "rbvet.gui.app:main"),
    ],
)
def test_entry_points_name_real_functions(table, name, target):
    assert PROJECT[table][name] == target
    module, _, function = target.partition(":")
    assert callable(getattr(importlib.import_module(module), function))
