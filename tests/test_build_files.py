"""The Bazel BUILD files cover the packages: every module is in a library's glob,
and each library depends on every package of ours its modules import.

Bazel itself is not needed: the BUILD files are read as text (their globs and
`//package` labels), the modules with `ast`.
"""

import ast
import glob as globlib
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP_PACKAGES = sorted(
    name for name in os.listdir(ROOT) if os.path.isfile(os.path.join(ROOT, name, "__init__.py"))
)


def _build_text(package):
    with open(os.path.join(ROOT, package, "BUILD")) as f:
        return f.read()


def _modules(package):
    """Paths of the package's modules, relative to its directory, subpackages included."""
    top = os.path.join(ROOT, package)
    for directory, subdirs, files in os.walk(top):
        if "__init__.py" not in files:
            subdirs[:] = []
            continue
        for name in files:
            if name.endswith(".py"):
                yield os.path.relpath(os.path.join(directory, name), top)


def _imported_packages(package):
    found = set()
    for module in _modules(package):
        with open(os.path.join(ROOT, package, module)) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return found & set(TOP_PACKAGES) - {package}


@pytest.mark.parametrize("package", TOP_PACKAGES)
def test_build_files_glob_every_module(package):
    patterns = re.findall(r'"([^"]*\*\.py)"', _build_text(package))
    globbed = {os.path.dirname(p) for p in patterns}
    missing = [m for m in _modules(package) if os.path.dirname(m) not in globbed]
    assert not missing, f"{package}/BUILD globs none of {missing}"


@pytest.mark.parametrize("package", TOP_PACKAGES)
def test_build_files_depend_on_every_package_imported(package):
    deps = set(re.findall(r'"//(\w+)"', _build_text(package)))
    assert _imported_packages(package) <= deps, f"{package}/BUILD lacks deps"


def _declared_targets(package):
    """Runs the BUILD file as Python (Starlark's subset) with rules that record names."""
    names = []

    def rule(*args, **kwargs):
        if "name" in kwargs:
            names.append(kwargs["name"])

    def build_glob(patterns, exclude=()):
        top = os.path.join(ROOT, package)
        found = {
            os.path.relpath(f, top) for p in patterns for f in globlib.glob(os.path.join(top, p))
        }
        return sorted(found - set(exclude))

    scope = {"glob": build_glob, "load": lambda *a: None}
    for kind in ("package", "exports_files", "py_library", "py_binary", "test_suite"):
        scope[kind] = rule
    scope["pytest_test"] = rule
    # compile() rejects a repeated keyword, the mark a bad merge leaves in a rule.
    exec(compile(_build_text(package), f"{package}/BUILD", "exec"), scope)
    return names


@pytest.mark.parametrize("package", TOP_PACKAGES + ["tests"])
def test_build_files_declare_each_target_once(package):
    names = _declared_targets(package)
    assert len(names) == len(set(names)), f"{package}/BUILD declares a target twice"


@pytest.mark.parametrize("package", TOP_PACKAGES + ["tests"])
def test_build_files_labels_name_declared_targets(package):
    labels = re.findall(r'"//(\w+)(?::(\w+))?"', _build_text(package))
    for label_package, target in labels:
        if label_package != "visibility":
            target = target or label_package
            assert target in _declared_targets(label_package), (
                f"{package}/BUILD: //{label_package}:{target}"
            )
