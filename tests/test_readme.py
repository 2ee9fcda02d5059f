"""The README's Python example runs verbatim (issue 10: it used an undefined `x`)."""

from __future__ import annotations

import contextlib
import io
import os
import re

import numpy as np

from conftest import REPO


def python_example() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("The same from Python")
    m = re.compile(r"```python\n(.*?)```", re.S).search(text, start)
    assert m, "no ```python block after 'The same from Python' in README.md"
    return m.group(1)


def test_readme_python_example_runs_verbatim(tmp_path):
    code = python_example()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    out = io.StringIO()
    try:
        scope: dict = {"__name__": "__readme__"}
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - our own README
    finally:
        os.chdir(cwd)
    assert (tmp_path / "out" / "net" / "net.h").is_file()
    assert scope["outputs"]["probs"].shape == (8, 10)
    np.testing.assert_allclose(scope["outputs"]["probs"].sum(axis=1), 1.0, atol=0.05)
    assert "SQNR" in out.getvalue()

