"""One source for figures: the generated sections of docs/benchmarks.md, docs/capacity.md, docs/design.md and
docs/operations.md, and the chart, are what bench/docgen.py renders from bench/results/*.json (issue 22,
item 7); every `make bench` script's results file is stamped (bench/provenance.py)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_docgen():
    spec = importlib.util.spec_from_file_location("docgen", ROOT / "bench" / "docgen.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


docgen = _load_docgen()


@pytest.mark.parametrize("doc", docgen.DOCS, ids=lambda p: p.name)
def test_the_docs_agree_with_the_results_files(doc):
    text = doc.read_text()
    assert docgen.sections(text), f"{doc.name} has no generated section"
    assert docgen.render(text, docgen.Results()) == text, f"{doc.name} disagrees with bench/results/: run `make docs`"


def test_every_section_names_a_renderer_and_every_renderer_is_used():
    used = [name for doc in docgen.DOCS for name in docgen.sections(doc.read_text())]
    assert set(used) == set(docgen.RENDERERS)
    # The headline is in both docs: they cannot give different "latest" figures.
    assert all("headline" in docgen.sections(doc.read_text()) for doc in docgen.HEADLINE_DOCS)


def test_a_changed_results_file_makes_the_check_fail(tmp_path):
    """The drift check sees a new run: one figure changed in scale.json changes every doc quoting it."""
    shutil.copytree(docgen.RESULTS, tmp_path / "results")
    path = tmp_path / "results" / "scale.json"
    run = json.loads(path.read_text())
    run["cronofy"]["per_user_per_working_day"] = 9.87
    run["cronofy"]["busiest_minute"] = 123
    path.write_text(json.dumps(run))
    for doc in docgen.HEADLINE_DOCS:
        text = doc.read_text()
        rendered = docgen.render(text, docgen.Results(tmp_path / "results"))
        assert rendered != text
        assert "**9.87**" in rendered and "busiest minute 123 of Cronofy's 500" in rendered
        # only the insides of the markers change
        outside = docgen.SECTION.sub(lambda m: m[1] + m[4], text)
        assert docgen.SECTION.sub(lambda m: m[1] + m[4], rendered) == outside


def test_a_marker_without_a_renderer_is_an_error():
    with pytest.raises(KeyError, match="no renderer named 'nope'"):
        docgen.render("<!-- generated:nope -->\nx\n<!-- /generated:nope -->\n", docgen.Results())


def test_a_new_renderer_is_one_decorated_function(tmp_path):
    """The capacity engineer's way in: register a renderer, put its markers in a doc."""
    try:
        @docgen.renderer("test-wall")
        def wall(results) -> str:
            return f"wall {results['scale']['wall_seconds']} s\n"

        text = "before\n<!-- generated:test-wall -->\nold\n<!-- /generated:test-wall -->\nafter\n"
        seconds = json.loads((docgen.RESULTS / "scale.json").read_text())["wall_seconds"]
        assert docgen.render(text, docgen.Results()) == (
            f"before\n<!-- generated:test-wall -->\nwall {seconds} s\n<!-- /generated:test-wall -->\nafter\n")
        with pytest.raises(ValueError):
            docgen.renderer("test-wall")(wall)
    finally:
        docgen.RENDERERS.pop("test-wall", None)


def test_the_committed_chart_is_the_one_the_results_draw(tmp_path):
    pytest.importorskip("matplotlib")
    drawn = tmp_path / "chart.png"
    docgen.chart(docgen.Results(), drawn)
    assert drawn.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert drawn.read_bytes() == docgen.CHART.read_bytes(), "docs/capacity-chart.png is stale: run `make docs`"


def test_every_make_bench_script_writes_a_stamped_results_file_the_docs_are_rendered_from():
    """The seven scripts of `make bench` each have a committed results file with its commit, date, settings
    and machine, and docs/benchmarks.md renders from every one of them."""
    makefile = (ROOT / "Makefile").read_text()
    bench = makefile[makefile.index("\nbench:"):makefile.index("\nbench-scale:")]
    scripts = [line.split("bench/")[1].split(".py")[0] for line in bench.splitlines() if "bench/" in line
               and ".py" in line]
    assert sorted(scripts) == sorted(docgen.BENCH_FILES)
    for stem in docgen.BENCH_FILES:
        data = json.loads((docgen.RESULTS / f"{stem}.json").read_text())
        prov = data["provenance"]
        assert len(prov["commit"]) == 40 and prov["date"].startswith("20") and prov["machine"]["cpus"] >= 1, stem
        assert "load_average_at_end" in prov["machine"] and isinstance(data["settings"], dict), stem
        stamp = f"`bench/results/{stem}.json`: commit {prov['commit'][:10]}"
        assert stamp in (ROOT / "docs" / "benchmarks.md").read_text(), stem


def test_a_new_week_changes_the_benchmarks_doc_and_nothing_outside_its_sections(tmp_path):
    shutil.copytree(docgen.RESULTS, tmp_path / "results")
    path = tmp_path / "results" / "week.json"
    week = json.loads(path.read_text())
    week["summary"]["week_requests_per_user_working_day"] = 98.76
    week["cost"]["steady_state"]["usd_per_1000_users_month"] = 54.32
    path.write_text(json.dumps(week))
    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text()
    rendered = docgen.render(text, docgen.Results(tmp_path / "results"))
    assert "98.76 Cronofy requests per user per working day" in rendered and "**54.32**" in rendered
    assert docgen.SECTION.sub(lambda m: m[1] + m[4], rendered) == docgen.SECTION.sub(lambda m: m[1] + m[4], text)


def test_the_provenance_stamp_and_its_reader(tmp_path):
    from bench import provenance

    path = provenance.write("probe", {"p50_ms": 1.5}, {"RUNS": 3}, folder=tmp_path)
    data = json.loads(path.read_text())
    assert list(data)[:2] == ["provenance", "settings"] and data["settings"] == {"RUNS": 3}
    assert data["provenance"]["commit"] == provenance.provenance()["commit"]
    assert {"cpus", "python", "load_average_at_start", "load_average_at_end"} <= set(data["provenance"]["machine"])
    assert provenance.read("probe", folder=tmp_path) == {"p50_ms": 1.5}


def test_results_written_by_earlier_runs_do_not_make_the_tree_dirty(tmp_path, monkeypatch):
    """`make bench` runs seven scripts in one tree: the results the first ones write are outputs, not changed
    code; a changed source file still is."""
    import subprocess

    from bench import provenance

    def git(*args):
        subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    (tmp_path / "bench" / "results").mkdir(parents=True)
    (tmp_path / "bench" / "results" / "a.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "c")
    monkeypatch.setattr(provenance, "ROOT", tmp_path)

    def stamp():
        monkeypatch.delattr(provenance.provenance, "_cached", raising=False)
        return provenance.provenance()

    (tmp_path / "bench" / "results" / "a.json").write_text('{"p50_ms": 2}')
    assert stamp()["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert stamp()["dirty"] is True
