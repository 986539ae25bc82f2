"""The results tables of the README, docs/results.md and the lab record against ``zoo/runs``.

``test_readme_and_lab_record_match_the_zoo`` is the guard: a figure of the README's headline table or
of docs/results.md (every run, the gains) that drifts from the committed predictions fails it. The other tests show the checker itself works on a fake zoo (and that
a one-digit change is caught).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ensemble import results, zoo
from test_zoo import make_fake_zoo

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "docs" / "results.md", ROOT / "docs" / "experiments.md"]
CHECKED = DOCS[:2]  # every results row of these must be recomputable from the zoo


def test_readme_and_lab_record_match_the_zoo():
    if not (ROOT / "zoo" / zoo.MANIFEST).is_file():
        pytest.skip("no zoo in this checkout")
    n, problems = results.check([p for p in DOCS if p.is_file()])
    assert problems == []
    assert n >= 7, f"only {n} figures checked: the README's headline tables should name zoo commands"
    for doc in CHECKED:
        assert results.check([doc])[0] >= 20, f"{doc.name}: its results tables should name zoo commands"


@pytest.mark.parametrize("doc", CHECKED, ids=lambda p: p.name)
def test_every_results_row_is_recomputable_from_the_zoo(doc):
    """No row of the README's or docs/results.md's results tables may name a run that is not in zoo/runs."""
    text = doc.read_text(encoding="utf-8")
    rows = [(row[0], row[header.index("command")]) for _, header, body in results.find_tables(text)
            if "command" in header and ("PrivateTest acc" in header or "points" in header) for _, row in body]
    assert rows, f"{doc.name} has no results table"
    assert [label for label, command in rows if results._combine_args(command) is None] == []


def test_one_altered_digit_in_the_readme_is_caught(tmp_path):
    if not (ROOT / "zoo" / zoo.MANIFEST).is_file():
        pytest.skip("no zoo in this checkout")
    recomputer = results.Recomputer()
    cells = results.expected_cells(ROOT / "README.md", recomputer)
    assert cells, "the README has no results table with zoo commands"
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines(keepends=True)
    first = next(c for c in cells if c.column == "with TTA")
    digit = re.search(r"\d(?= %)", lines[first.line - 1][lines[first.line - 1].index(first.text.strip("* ")):])
    assert digit
    start = lines[first.line - 1].index(first.text.strip("* ")) + digit.start()
    line = lines[first.line - 1]
    lines[first.line - 1] = line[:start] + str((int(line[start]) + 1) % 10) + line[start + 1:]
    altered = tmp_path / "README.md"
    altered.write_text("".join(lines), encoding="utf-8")
    n, problems = results.check([altered], recomputer)
    assert len(problems) == 1 and "with TTA" in problems[0] and f"README.md:{first.line}" in problems[0]


@pytest.fixture
def fake_zoo_doc(tmp_path):
    root, _ = make_fake_zoo(tmp_path)
    runs = root / "runs"
    doc = tmp_path / "doc.md"
    doc.write_text(f"""# Results

| run | command | PrivateTest acc | with TTA | cross-entropy | PublicTest acc | wall time |
|---|---|---:|---:|---:|---:|---:|
| `b` | `python -m ensemble.combine {runs} --runs b` | ? | **?** | ? | ? | 3 min |
| greedy | `python -m ensemble.combine {runs} --select greedy` | ? | ? | ? | ? | |

| gain on PrivateTest | command | points | 95 % CI | McNemar p |
|---|---|---:|---:|---:|
| TTA, `b` | `python -m ensemble.combine {runs}` | ? | ? | ? |
| class weighting, `a` | `python -m ensemble.combine {runs}` | ? | ? | ? |
| ensemble vs best single run | `python -m ensemble.combine {runs}` | ? | ? | ? |

| lost run | command | PrivateTest acc |
|---|---|---:|
| old | `python -m ensemble.combine /work/runs --runs old` | 12.34 % |
""")
    return doc, runs


def test_render_fills_the_figures_then_check_passes(fake_zoo_doc):
    from ensemble.combine import combine

    doc, runs = fake_zoo_doc
    n, problems = results.check([doc])
    assert n == 2 * 4 + 3 * 3 and len(problems) == n  # every '?' differs; the lost run is not checked
    doc.write_text(results.render(doc))
    assert results.check([doc]) == (n, [])
    text = doc.read_text()
    s = combine(runs, write=False).summary
    tta = s["gains"]["tta"]["b"]
    assert f"| TTA, `b` | `python -m ensemble.combine {runs}` | {100 * tta['delta']:+.2f} |" in text
    b = combine(runs, runs=["b"], write=False).summary["ensemble"]
    assert f"**{100 * b['test_acc_tta']:.2f} %**" in text and "| 3 min |" in text and "12.34 %" in text


def test_an_unknown_gain_row_is_a_clear_error(fake_zoo_doc):
    doc, runs = fake_zoo_doc
    doc.write_text(doc.read_text().replace("ensemble vs best single run", "something else"))
    with pytest.raises(ValueError, match="gain row 'something else'"):
        results.check([doc])


def test_figure_plots_every_accuracy_row(fake_zoo_doc, tmp_path):
    doc, _ = fake_zoo_doc
    out = results.figure(doc, tmp_path / "fig.png")
    assert out.stat().st_size > 1000 and out.read_bytes()[:4] == b"\x89PNG"
    lo, hi = results.wilson_interval(70, 100)
    assert lo < 0.7 < hi and hi - lo == pytest.approx(0.18, abs=0.01)


def test_frontier_chooses_each_budget_on_publictest_and_plots(fake_zoo_doc, tmp_path):
    from ensemble import frontier
    from ensemble.combine import combine

    runs = tmp_path / "art"  # the run folders the fake zoo was made from (the zoo's are checksummed)
    _record_hours(runs)
    points = frontier.frontier_points(runs, budgets=[0.0001, 1000])
    assert {r["name"] for r in points["runs"]} == {"a", "a-cw", "b"}
    # a budget below every run buys nothing; the largest one is plain greedy selection
    assert len(points["ensembles"]) == 1 and points["ensembles"][0]["budget"] == 1000
    greedy = combine(runs, select="greedy", write=False).summary["ensemble"]
    assert points["ensembles"][0]["test_acc"] == pytest.approx(greedy["test_acc_tta"])
    assert points["ensembles"][0]["hours"] == pytest.approx(greedy["cost"]["train_hours"])
    out = frontier.figure(points, tmp_path / "f.png")
    assert out.read_bytes()[:4] == b"\x89PNG" and not list(tmp_path.glob("*.tmp"))


def test_budget_hours_row_is_recomputed_and_refused_without_greedy(fake_zoo_doc, tmp_path):
    from ensemble.combine import CombineError, combine

    runs = tmp_path / "art"
    _record_hours(runs)
    hours = sorted(frontier_hours(runs))
    s = combine(runs, select="greedy", budget_hours=hours[0] + 1e-6, write=False).summary
    assert s["ensemble"]["cost"]["train_hours"] <= hours[0] + 1e-6 and s["settings"]["budget_hours"] > 0
    with pytest.raises(CombineError, match="--budget-hours"):
        combine(runs, budget_hours=5.0, write=False)


def frontier_hours(runs):
    from ensemble.combine import load_runs, training_hours

    return training_hours(load_runs(Path(runs))[0])


def _record_hours(runs, hours=(("a", 1.0), ("a-cw", 2.0), ("b", 0.5))):
    """Give the fake runs the train_seconds a trainer records."""
    import json

    for name, h in hours:
        path = Path(runs) / name / "run.json"
        info = json.loads(path.read_text())
        info["train_seconds"] = 3600 * h
        path.write_text(json.dumps(info))
