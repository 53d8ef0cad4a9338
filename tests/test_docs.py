"""The docs match the code: ARCHITECTURE.md is generated, citations resolve inside the repo."""

import os
import re
import subprocess
import sys

from tests import train_testutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE_DIRS = ("keras_layers", "pipelines", "delving", "export", "tests", "benchmarks", "tools")


def _sources():
    for top in SOURCE_DIRS:
        for directory, _, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                if name.endswith((".py", ".md", "BUILD")):
                    path = os.path.join(directory, name)
                    with open(path) as f:
                        yield os.path.relpath(path, ROOT), f.read()


def test_architecture_doc_is_generated_from_the_current_code():
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "architecture_doc.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_paper_citations_name_sections_of_docs_paper():
    with open(os.path.join(ROOT, "docs", "PAPER.md")) as f:
        sections = set(re.findall(r"^## (.+)$", f.read(), re.M))
    cited = {}
    for path, text in _sources():
        assert "NOTES" + ".md" not in text, f"{path} cites a file outside the repository"
        for section in re.findall(r'docs/PAPER\.md, "([^"]+)"', text):
            cited.setdefault(section, path)
    assert cited, "no module cites docs/PAPER.md"
    missing = {s: p for s, p in cited.items() if s not in sections}
    assert not missing, missing


def _read(relpath):
    with open(os.path.join(ROOT, relpath)) as f:
        return f.read()


def _user_docs():
    """README.md and docs/*.md: what a user of the project reads."""
    names = ["README.md"] + [
        os.path.join("docs", n) for n in sorted(os.listdir(os.path.join(ROOT, "docs")))
    ]
    return {n: _read(n) for n in names if n.endswith(".md")}


def test_user_docs_name_no_tracker_issue():
    for path, text in _user_docs().items():
        found = re.findall(r"issue #?[0-9]+", text, re.I)
        assert not found, f"{path}: {found}: say what the target is instead"


def test_user_docs_link_to_files_that_exist():
    for path, text in _user_docs().items():
        base = os.path.dirname(os.path.join(ROOT, path))
        for target in re.findall(r"\]\(([^)#:]+)\)", text):
            assert os.path.exists(os.path.join(base, target)), f"{path} links to {target}"


def test_readme_gives_ci_its_test_command():
    # .ci/run runs the first such line (sed 's/^\$ \(.*pytest.*\)$/\1/p' | head -n 1).
    commands = re.findall(r"^\$ (.*pytest.*)$", _read("README.md"), re.M)
    assert commands, "README.md has no `$ ... pytest ...` line for .ci/run"
    assert "requirements-test.txt" in commands[0]


def test_readme_layers_example_runs(tmp_path):
    """The README's first Python block, as a user would run it (in a directory of its own)."""
    (example,) = re.findall(r"^```python\n(.*?)^```", _read("README.md"), re.S | re.M)[:1]
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run(
        [sys.executable, "-c", example],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=train_testutil.HANG_GUARD_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "prelu_spp.keras").exists()
