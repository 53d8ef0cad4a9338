"""The docs match the code: ARCHITECTURE.md is generated, citations resolve inside the repo."""

import os
import re
import subprocess
import sys

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
