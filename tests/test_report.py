"""The demo runs end to end and its report holds every section."""

import json

import pytest

from mogsgd.cli import main
from mogsgd.report import METHODS, SECTIONS


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "report"
    assert main(["demo", "--out", str(out), "-q"]) == 0
    return out


def test_report_has_every_section_and_method(demo_dir):
    md = (demo_dir / "report.md").read_text()
    html = (demo_dir / "report.html").read_text()
    for title, names, _ in SECTIONS:
        assert title in md
        for name in names:
            assert name in md
    for label, _ in METHODS:
        assert f"| {label} |" in md and f"<td>{label}</td>" in html
    assert html.count("data:image/png;base64,") >= 10 and "data:image/gif;base64," in html
    assert "src=\"" not in html.replace("src=\"data:", "")  # self-contained


def test_report_figures_exist_in_png_and_svg(demo_dir):
    pngs = {p.stem for p in demo_dir.glob("*.png")}
    svgs = {p.stem for p in demo_dir.glob("*.svg")}
    assert len(pngs) >= 10 and pngs == svgs
    assert (demo_dir / "sgd_fit.gif").stat().st_size > 1000


def test_summary_json_is_consistent(demo_dir):
    summary = json.loads((demo_dir / "summary.json").read_text())
    rows = {r["method"]: r for r in summary["rows"]}
    assert set(rows) == {label for label, _ in METHODS}
    em = summary["reference"]["EM optimum"]
    for label in ("SGD", "Momentum", "Adam"):
        assert rows[label]["train NLL"] < em + 0.02, label
        assert rows[label]["accuracy"] > 0.9


def test_demo_refuses_a_non_empty_folder(demo_dir, capsys):
    assert main(["demo", "--out", str(demo_dir)]) == 2
    assert "--force" in capsys.readouterr().err


def test_markdown_tables_are_well_formed(demo_dir):
    """Every row of every table has as many cells as its header (no stray '|')."""
    lines = (demo_dir / "report.md").read_text().splitlines()
    tables, current = [], []
    for line in lines + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    assert len(tables) >= 4
    for table in tables:
        widths = {line.count("|") for line in table}
        assert len(widths) == 1, table[0]
