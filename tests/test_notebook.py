"""The tutorial notebook runs from a clean kernel, quickly, and renders to HTML."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "tutorial.ipynb"
TIME_LIMIT_S = 120.0


def _render_module():
    spec = importlib.util.spec_from_file_location("render_notebook",
                                                  ROOT / "docs" / "render_notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = _render_module()


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    workdir = tmp_path_factory.mktemp("notebook")
    start = time.perf_counter()
    nb = render.execute_notebook(NOTEBOOK, timeout=int(TIME_LIMIT_S), cwd=workdir,
                                 env=render.kernel_env({"MPLBACKEND": "Agg"}))
    return nb, time.perf_counter() - start, workdir


def test_committed_notebook_is_valid_and_has_no_outputs():
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the tutorial has no code cells"
    assert all(not c.outputs and c.execution_count is None for c in code), \
        "commit the notebook without outputs (see docs/render_notebook.py for a rendered copy)"


@pytest.mark.slow
def test_tutorial_runs_without_errors_in_under_two_minutes(executed):
    nb, elapsed, workdir = executed
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, f"{errors[0].ename}: {errors[0].evalue}"
    assert elapsed < TIME_LIMIT_S, f"the notebook took {elapsed:.0f} s (limit {TIME_LIMIT_S:.0f})"
    assert not any(workdir.iterdir()), "the notebook must not write files"
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    for needle in ("parameter group", "means", "log_sigma", "logits", "EM"):
        assert needle in text


@pytest.mark.slow
def test_gradient_check_table_shows_small_relative_errors(executed):
    nb, _, _ = executed
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    groups = (["means"], ["log_sigma"], ["logits"])
    rows = [line.split() for line in text.splitlines()
            if line.split()[:1] in groups and len(line.split()) == 3]
    assert len(rows) == 3, text
    for name, _, rel in rows:
        assert float(rel) < 1e-6, f"{name}: relative error {rel}"


@pytest.mark.slow
def test_executed_notebook_renders_to_html(executed):
    nb, _, _ = executed
    page = render.minimal_html(nb, "tutorial")
    assert page.startswith("<!DOCTYPE html>")
    assert "parameter group" in page and "<h2>" in page


def test_minimal_renderer_handles_markdown_and_every_output_kind():
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    nb = new_notebook(cells=[
        new_markdown_cell("# Title\n\nSome *em* and **strong** text with `code`, "
                          "math $a_i * b_i$ and a [link](https://example.org).\n\n"
                          "* one\n* two\n\n1. first\n2. second\n\n$$\nx < y\n$$"),
        new_code_cell("print(1 < 2)", execution_count=1, outputs=[
            new_output("stream", name="stdout", text="True\n"),
            new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "fig"}),
            new_output("execute_result", data={"text/plain": "<Figure>"}, execution_count=1),
            new_output("error", ename="ValueError", evalue="bad",
                       traceback=["\x1b[31mValueError\x1b[0m: bad"]),
        ]),
    ])
    page = render.minimal_html(nb, "t")
    assert "<h1>Title</h1>" in page
    assert "<em>em</em>" in page and "<strong>strong</strong>" in page
    assert "<code>code</code>" in page
    assert "$a_i * b_i$" in page, "inline math must reach MathJax untouched"
    assert '<a href="https://example.org">link</a>' in page
    assert "<ul><li>one</li><li>two</li></ul>" in page
    assert "<ol><li>first</li><li>second</li></ol>" in page
    assert "x &lt; y" in page
    assert "print(1 &lt; 2)" in page
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in page
    assert "&lt;Figure&gt;" in page
    assert "ValueError: bad" in page and "\x1b" not in page
