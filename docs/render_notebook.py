"""Execute a notebook and write an HTML copy with its outputs.

Usage, from the repository root::

    PYTHONPATH=src python docs/render_notebook.py                 # notebooks/tutorial.ipynb
    PYTHONPATH=src python docs/render_notebook.py NOTEBOOK -o OUT.html --executed OUT.ipynb
    PYTHONPATH=src python docs/render_notebook.py --markdown docs/tutorial.md   # published

The default output is ``out/tutorial.html`` (``out/`` is git-ignored).  ``--markdown
docs/tutorial.md`` writes the published copy instead: Markdown with the code, its printed
output and its figures (PNG files in ``docs/tutorial_files/``), which GitHub renders,
formulas included; regenerate it with that command after changing the notebook.  The notebook runs
with nbclient on the ``python3`` kernel, in a temporary directory, with ``src/`` put in
front of ``PYTHONPATH`` so it imports this checkout's ``mogsgd``.  The HTML is written by
nbconvert when it is installed, and otherwise by the small renderer below, which handles the
markdown the project's notebooks use and embeds figures as PNG data URIs.  Math is left as
TeX for MathJax, loaded from a CDN when the page is opened (offline it shows the TeX source).
The committed notebook stays without outputs; this script never writes into it.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NOTEBOOK = ROOT / "notebooks" / "tutorial.ipynb"
DEFAULT_HTML = ROOT / "out" / "tutorial.html"

__all__ = ["kernel_env", "execute_notebook", "notebook_to_html", "minimal_html",
           "notebook_to_markdown", "main"]


def kernel_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The current environment with this checkout's ``src`` first on ``PYTHONPATH``."""
    env = dict(os.environ)
    paths = [str(ROOT / "src")] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra or {})
    return env


def execute_notebook(
    path: str | os.PathLike,
    *,
    timeout: int = 600,
    cwd: str | os.PathLike | None = None,
    env: dict[str, str] | None = None,
) -> nbformat.NotebookNode:
    """Run every cell of the notebook at ``path`` and return it with outputs (not saved).

    Cells run in ``cwd`` (a fresh temporary directory when ``None``); ``timeout`` is the limit
    per cell in seconds; ``env`` is the kernel's environment (default :func:`kernel_env`).
    A failing cell raises ``nbclient.exceptions.CellExecutionError``.
    """
    from nbclient import NotebookClient

    nb = nbformat.read(str(path), as_version=4)
    env = kernel_env() if env is None else env
    with tempfile.TemporaryDirectory(prefix="mogsgd-nb-") as tmp:
        workdir = str(cwd) if cwd is not None else tmp
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": workdir}})
        client.execute(env=env)
    return nb


# ---------------------------------------------------------------- HTML output
def notebook_to_html(nb: nbformat.NotebookNode, title: str = "notebook") -> str:
    """HTML of an executed notebook: nbconvert's when installed, else :func:`minimal_html`."""
    try:
        from nbconvert import HTMLExporter
    except ImportError:
        return minimal_html(nb, title)
    body, _ = HTMLExporter().from_notebook_node(nb)
    return body


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 62rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.5; color: #222; }
pre { background: #f6f8fa; padding: 0.6rem 0.8rem; overflow-x: auto; font-size: 0.85rem; }
pre.input { border-left: 3px solid #4a7ab5; }
pre.output { background: #fff; border-left: 3px solid #bbb; }
pre.stderr { background: #fff4e5; }
pre.error { background: #fdecea; }
code { background: #f6f8fa; padding: 0 0.2rem; }
img { max-width: 100%; }
.prompt { color: #888; font-size: 0.75rem; margin-top: 1rem; }
"""
_MATHJAX = (
    "<script>window.MathJax = {tex: {inlineMath: [['$', '$']], displayMath: [['$$', '$$']],"
    " tags: 'ams'}};</script>\n"
    '<script async src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"></script>'
)


def _inline(text: str) -> str:
    """Inline markdown: code spans, math (left as TeX), links, bold, italics; HTML-escaped."""
    keep: list[str] = []

    def stash(fragment: str) -> str:
        keep.append(fragment)
        return f"\x00{len(keep) - 1}\x00"

    text = re.sub(r"`([^`]+)`", lambda m: stash(f"<code>{html.escape(m.group(1))}</code>"), text)
    text = re.sub(r"\$[^$\n]+?\$", lambda m: stash(html.escape(m.group(0))), text)
    text = html.escape(text, quote=False)
    text = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)",
                  lambda m: f'<a href="{html.escape(m.group(2))}">{m.group(1)}</a>', text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", text)
    return re.sub("\x00(\\d+)\x00", lambda m: keep[int(m.group(1))], text)


def markdown_to_html(source: str) -> str:
    """The subset of markdown used in the notebooks: headings, paragraphs, bullet and numbered
    lists, fenced code, ``$$`` display math and the inline forms of :func:`_inline`."""
    out: list[str] = []
    para: list[str] = []
    items: list[str] = []
    list_tag = ""
    lines = source.splitlines()

    def flush() -> None:
        nonlocal list_tag
        if para:
            out.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()
        if items:
            out.append(f"<{list_tag}>" + "".join(f"<li>{_inline(i)}</li>" for i in items)
                       + f"</{list_tag}>")
            items.clear()
            list_tag = ""

    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```") or stripped == "$$":
            flush()
            fence = "```" if stripped.startswith("```") else "$$"
            block = []
            i += 1
            while i < len(lines) and lines[i].strip() != fence:
                block.append(lines[i])
                i += 1
            body = html.escape("\n".join(block))
            out.append(f"<pre><code>{body}</code></pre>" if fence == "```"
                       else f'<div class="math">$$\n{body}\n$$</div>')
        elif not stripped:
            flush()
        elif m := re.match(r"(#{1,6})\s+(.*)", stripped):
            flush()
            level = len(m.group(1))
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
        elif m := re.match(r"([*-]|\d+\.)\s+(.*)", stripped):
            tag = "ol" if m.group(1)[0].isdigit() else "ul"
            if para or (items and tag != list_tag):
                flush()
            list_tag = tag
            items.append(m.group(2))
        elif items and line.startswith((" ", "\t")):
            items[-1] += " " + stripped
        else:
            if items:
                flush()
            para.append(stripped)
        i += 1
    flush()
    return "\n".join(out)


def _output_html(output) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        cls = "stderr" if output.get("name") == "stderr" else "stdout"
        return f'<pre class="output {cls}">{html.escape(output.get("text", ""))}</pre>'
    if kind == "error":
        trace = _ANSI.sub("", "\n".join(output.get("traceback", [])))
        return f'<pre class="output error">{html.escape(trace)}</pre>'
    data = output.get("data", {})
    if "image/png" in data:
        png = "".join(data["image/png"]).replace("\n", "")
        return f'<img src="data:image/png;base64,{png}" alt="figure">'
    if "image/svg+xml" in data:
        return "".join(data["image/svg+xml"])
    if "text/html" in data:
        return "".join(data["text/html"])
    if "text/markdown" in data:
        return markdown_to_html("".join(data["text/markdown"]))
    if "text/plain" in data:
        return f'<pre class="output">{html.escape("".join(data["text/plain"]))}</pre>'
    return ""


def minimal_html(nb: nbformat.NotebookNode, title: str = "notebook") -> str:
    """A self-contained HTML page of the notebook's cells and outputs, without nbconvert."""
    parts = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            parts.append(markdown_to_html(cell.source))
        elif cell.cell_type == "code":
            count = cell.get("execution_count") or " "
            parts.append(f'<div class="prompt">In [{count}]:</div>')
            parts.append(f'<pre class="input"><code>{html.escape(cell.source)}</code></pre>')
            parts.extend(_output_html(o) for o in cell.get("outputs", []))
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>\n{_MATHJAX}\n</head>"
        "<body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


# ------------------------------------------------------------ Markdown output
def _fence(text: str, lang: str = "") -> str:
    text = text.rstrip("\n")
    ticks = "```" if "```" not in text else "~~~~"
    return f"{ticks}{lang}\n{text}\n{ticks}"


def notebook_to_markdown(nb: nbformat.NotebookNode, figures: Path, link: str,
                         moved: tuple[Path, Path] | None = None) -> str:
    """Markdown of an executed notebook: markdown cells as they are, code in ``python``
    fences, printed output in plain fences, figures written to ``figures`` as
    ``cell{N}_{M}.png`` (any previous ones removed) and linked as ``link/cell{N}_{M}.png``.
    ``moved = (notebook folder, output folder)`` rewrites relative links for the new place."""
    import base64

    def relink(text: str) -> str:
        if moved is None:
            return text

        def fix(m: re.Match) -> str:
            target = m.group(2)
            if re.match(r"[a-z]+:|#|/", target):
                return m.group(0)
            new = os.path.relpath((moved[0] / target).resolve(), moved[1].resolve())
            return f"{m.group(1)}({Path(new).as_posix()})"

        return re.sub(r"(\[[^\]]*\])\(([^)\s]+)\)", fix, text)

    figures.mkdir(parents=True, exist_ok=True)
    for old in figures.glob("cell*.png"):
        old.unlink()
    parts = []
    for n, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            parts.append(relink(cell.source.strip()))
            continue
        if cell.cell_type != "code":
            continue
        parts.append(_fence(cell.source, "python"))
        for m, output in enumerate(cell.get("outputs", [])):
            kind = output.get("output_type")
            data = output.get("data", {})
            if kind == "stream":
                parts.append(_fence(output.get("text", "")))
            elif kind == "error":
                parts.append(_fence(_ANSI.sub("", "\n".join(output.get("traceback", [])))))
            elif "image/png" in data:
                name = f"cell{n:02d}_{m}.png"
                png = "".join(data["image/png"]).replace("\n", "")
                (figures / name).write_bytes(base64.b64decode(png))
                parts.append(f"![figure of cell {n}]({link}/{name})")
            elif "text/markdown" in data:
                parts.append("".join(data["text/markdown"]).strip())
            elif "text/plain" in data:
                parts.append(_fence("".join(data["text/plain"])))
    header = ("<!-- Generated from notebooks/tutorial.ipynb by `PYTHONPATH=src python "
              "docs/render_notebook.py --markdown docs/tutorial.md`; edit the notebook, not "
              "this file. -->")
    return header + "\n\n" + "\n\n".join(p for p in parts if p) + "\n"


# ------------------------------------------------------------------ command line
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", nargs="?", default=str(DEFAULT_NOTEBOOK))
    parser.add_argument("-o", "--output", default=str(DEFAULT_HTML), help="HTML file to write")
    parser.add_argument("--executed", help="also save the executed notebook here")
    parser.add_argument("--markdown", metavar="OUT.md",
                        help="write Markdown (figures in OUT_files/) instead of HTML")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    nb = execute_notebook(args.notebook, timeout=args.timeout)
    elapsed = time.perf_counter() - start
    if args.markdown:
        out = Path(args.markdown)
        figures = out.with_name(out.stem + "_files")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(notebook_to_markdown(nb, figures, figures.name,
                                            (Path(args.notebook).parent, out.parent)),
                       encoding="utf-8")
    else:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(notebook_to_html(nb, title=Path(args.notebook).stem), encoding="utf-8")
    if args.executed:
        nbformat.write(nb, args.executed)
    print(f"executed {args.notebook} in {elapsed:.1f} s; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
