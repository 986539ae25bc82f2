"""The report page ``OUT/index.html``: self-contained, every figure present, tables equal to summary.json,
checked in headless Chromium (Debian's ``chromium`` + ``chromium-driver`` through Selenium) when one exists.

``python tests/test_html_report.py PAGE.html OUT.png`` saves the browser's screenshot of a page (the top
1200x1400 pixels), as ``docs/report.png`` was made.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from ensemble.artifacts import write_predictions
from ensemble.combine import combine, main
from ensemble.report import fmt_num, fmt_pct

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_combine import VIEWS, _probs, make_runs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), shutil.which("google-chrome"))
                 if p), None)
CHROMEDRIVER = shutil.which("chromedriver")


class _Page(HTMLParser):
    """Images (attributes), tables (rows of cell texts by table id), script and link tags of a page."""

    def __init__(self):
        super().__init__()
        self.images, self.tables, self.scripts, self.links = [], {}, 0, []
        self._table, self._row, self._cell = None, None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a)
        elif tag == "script":
            self.scripts += 1
        elif tag in ("link", "a", "iframe", "source"):
            self.links.append(a.get("href") or a.get("src") or "")
        elif tag == "table":
            self._table = a.get("id")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(Path(path).read_text(encoding="utf-8"))
    return page


def write_histories(root: Path, names, epochs=6, phase_run=None):
    """A CSVLogger-like history.csv per run; ``phase_run`` also gets a ``phase`` column (two phases)."""
    rng = np.random.default_rng(3)
    for name in names:
        cols = ["epoch", "accuracy", "learning_rate", "loss", "val_accuracy", "val_loss"]
        if name == phase_run:
            cols.append("phase")
        with open(root / name / "history.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(cols)
            for e in range(epochs):
                acc = 0.3 + 0.05 * e + rng.normal(0, 0.01)
                row = [e, acc, 1e-3, 1.8 - 0.1 * e, acc - 0.03 + rng.normal(0, 0.02), 1.9 - 0.08 * e]
                w.writerow(row + (["frozen" if e < 3 else "fine-tune"] if name == phase_run else []))


def expected_headline(summary: dict) -> dict[str, list[str]]:
    """The headline table's cells computed from summary.json, per run and for the ensemble."""
    out = {}
    for name, e in list(summary["runs"].items()) + [("ensemble", summary["ensemble"])]:
        out[name] = [fmt_pct(e["test_acc"]), fmt_pct(e["test_acc_tta"]), fmt_num(e["test_loss_tta"], 3),
                     fmt_pct(e["val_acc_tta"])]
    return out


def check_headline(rows: list[list[str]], summary: dict) -> None:
    """Headline rows (header first) against summary.json: run, acc, acc TTA, interval, loss, val acc, weight."""
    expected = expected_headline(summary)
    body = rows[1:]
    assert [r[0] for r in body] == list(expected)
    for r in body:
        assert [r[1], r[2], r[4], r[5]] == expected[r[0]], r[0]
        low, high = (float(x) for x in re.findall(r"[\d.]+", r[3]))
        assert low <= float(r[2]) <= high


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Fake runs with history.csv files, combined with an eval set: (report folder, summary)."""
    root = make_runs(tmp_path_factory.mktemp("html") / "artifacts", ["baseline", "baseline-cw", "vgg"])
    write_histories(root, ["baseline", "baseline-cw"], phase_run="baseline-cw")  # vgg has none
    out = root.parent / "report"
    assert main([str(root), "--out", str(out), "--quiet", "--bootstrap", "500"]) == 0
    return out, json.loads((out / "summary.json").read_text())


def test_the_page_is_self_contained_and_complete(report):
    out, summary = report
    text = (out / "index.html").read_text(encoding="utf-8")
    page = parse(out / "index.html")
    assert page.scripts == 0 and "http://" not in text and "https://" not in text
    assert all(link.startswith("data:") or link.startswith("#") for link in page.links)
    assert "<title>" in text and "python -m ensemble.combine" in text
    ids = {img["id"] for img in page.images}
    assert {"fig-accuracy", "fig-gains", "fig-confusion-ensemble", "fig-per-class", "fig-reliability",
            "fig-learning"} <= ids
    assert f"fig-confusion-{summary['ensemble']['best_single']}" in ids
    for img in page.images:
        assert img["src"].startswith("data:image/png;base64,") and len(img["alt"]) > 20
    check_headline(page.tables["headline"], summary)
    assert len(page.tables["error-overlap"]) == len(summary["error_overlap"]["runs"]) + 1  # the header row too
    assert "No history.csv for: vgg" in text
    gains = page.tables["gains"][1:]
    assert len(gains) == 1 + 1 + 3 + 1  # ensemble, TTA ensemble, TTA per run, class weights
    assert gains[0][1] == f"{100 * summary['gains']['ensemble']['delta']:+.2f}"


def test_intervals_are_the_percentile_bootstrap_of_the_accuracy():
    from ensemble import html_report, metrics

    rng = np.random.default_rng(0)
    correct = rng.random((2, 300)) < np.array([[0.6], [0.8]])
    ci = html_report.accuracy_intervals(correct, 1000, 5)
    idx = metrics.bootstrap_indices(300, 1000, 5)
    for c in range(2):
        ref = np.quantile(correct[c][idx].mean(axis=1), [0.025, 0.975])
        np.testing.assert_allclose(ci[c], ref)
        assert ci[c, 0] < correct[c].mean() < ci[c, 1]


def test_history_marks_the_chosen_epoch_and_phase_changes(tmp_path):
    from ensemble import html_report

    (tmp_path / "r").mkdir()
    write_histories(tmp_path, ["r"], phase_run="r")
    cols = html_report.read_history(tmp_path / "r" / "history.csv")
    chosen, starts = html_report.history_marks(cols)
    assert chosen == int(np.argmax(cols["val_accuracy"])) and starts == [3]
    assert html_report.history_marks(cols, "val_loss")[0] == int(np.argmin(cols["val_loss"]))
    assert html_report.read_history(tmp_path / "missing.csv") is None


def test_no_html_skips_the_page(tmp_path):
    root = make_runs(tmp_path / "artifacts", ["a", "b"], n_val=30, n_test=40)
    assert main([str(root), "--out", str(tmp_path / "r"), "--quiet", "--no-html", "--bootstrap", "50"]) == 0
    assert (tmp_path / "r" / "summary.json").is_file() and not (tmp_path / "r" / "index.html").exists()


def test_eval_sets_and_outlier_faces_from_the_data_file(tmp_path, monkeypatch):
    from conftest import write_fake_csv
    from ensemble.artifacts import write_eval
    from members.data import load_dataset

    monkeypatch.setenv("FER2013_CACHE", str(tmp_path / "cache"))
    data_path = write_fake_csv(tmp_path / "fer.csv", {"Training": 2, "PublicTest": 4, "PrivateTest": 6})
    data = load_dataset(data_path, verbose=False)
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        d = tmp_path / "artifacts" / name
        write_predictions(d, VIEWS, _probs(rng, data.val.y, strength=0.3), data.val.y, data.val.ids,
                          _probs(rng, data.test.y, strength=0.3), data.test.y, data.test.ids)
        (d / "run.json").write_text(json.dumps({"member": name}))
        write_eval(d, "other", VIEWS, _probs(rng, data.test.y[:20]), data.test.y[:20], np.arange(20))
    out = tmp_path / "report"
    assert main([str(tmp_path / "artifacts"), "--out", str(out), "--quiet", "--bootstrap", "50", "--eval", "other",
                 "--data", str(data_path)]) == 0
    page = parse(out / "index.html")
    ids = {img["id"] for img in page.images}
    assert {"fig-outliers", "fig-eval-other"} <= ids
    # ensemble/ reads the faces itself (it never imports members): the same pixels as the data layer's
    from ensemble.html_report import load_faces

    faces, why = load_faces(data_path, data.test.ids, data.test.y)
    assert why is None and np.array_equal(faces, data.test.x)
    assert "labels" in load_faces(data_path, data.test.ids, (data.test.y + 1) % 7)[1]
    ev = json.loads((out / "eval-other.json").read_text())
    assert page.tables["eval-other"][-1][2] == fmt_pct(ev["ensemble"]["acc_tta"])
    # ids that the data file does not hold: a note instead of the faces, the rest of the page intact
    other = write_fake_csv(tmp_path / "small.csv", {"Training": 1, "PublicTest": 1, "PrivateTest": 1})
    assert main([str(tmp_path / "artifacts"), "--out", str(out), "--quiet", "--bootstrap", "50",
                 "--data", str(other)]) == 0
    text = (out / "index.html").read_text()
    assert "not in that file" in text and "fig-outliers" not in text


def test_combine_without_html_keeps_no_arrays(tmp_path):
    root = make_runs(tmp_path / "artifacts", ["a", "b"], n_val=30, n_test=40)
    result = combine(root, out=tmp_path / "r", n_resamples=50, html=False)
    assert not result.arrays and (tmp_path / "r" / "summary.json").is_file()


def test_the_page_with_faces_imports_no_deep_learning_framework(tmp_path):
    import subprocess

    from conftest import write_fake_csv

    data_path = write_fake_csv(tmp_path / "fer.csv")
    root = make_runs(tmp_path / "artifacts", ["a", "b"], n_val=30, n_test=40)
    code = (
        "import sys; from ensemble.combine import main; "
        f"assert main([{str(root)!r}, '--out', {str(tmp_path / 'rep')!r}, '--quiet', '--bootstrap', '50', "
        f"'--data', {str(data_path)!r}]) == 0; "
        "bad = [m for m in ('tensorflow', 'keras', 'torch', 'jax') if m in sys.modules]; "
        "assert not bad, bad; print('clean')"
    )
    env = {**__import__("os").environ, "FER2013_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "clean" in proc.stdout and (tmp_path / "rep" / "index.html").is_file()


# -------- the real browser --------

def _driver(width=1200, height=1400):
    """A headless Chromium driven by Selenium and the system chromedriver; skips when either is missing."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("no Chromium browser or chromedriver on this machine (Debian: apt-get install chromium "
                    "chromium-driver; .ci/run installs them)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--hide-scrollbars", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    except Exception as exc:  # a browser that will not start is an environment problem, not the page's
        pytest.skip(f"headless Chromium did not start: {str(exc).splitlines()[0]}")


def _not_blank(png: bytes) -> bool:
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    return len(img.getcolors(maxcolors=1 << 20) or [0, 0]) > 50


def check_in_browser(page: Path, summary: dict, screenshot: Path | None = None) -> None:
    driver = _driver()
    try:
        driver.get(page.resolve().as_uri())
        images = driver.execute_script("return Array.from(document.images).map("
                                       "i => [i.id, i.complete, i.naturalWidth, i.alt])")
        assert images and all(complete and width > 0 and alt for _, complete, width, alt in images), images
        rows = driver.execute_script("return Array.from(document.querySelectorAll('#headline tr')).map("
                                     "r => Array.from(r.cells).map(c => c.textContent))")
        check_headline(rows, summary)
        severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert not severe, severe
        png = driver.get_screenshot_as_png()
        assert _not_blank(png)
        if screenshot is not None:
            screenshot.write_bytes(png)
    finally:
        driver.quit()


def test_the_page_renders_in_headless_chromium(report, tmp_path):
    out, summary = report
    check_in_browser(out / "index.html", summary, tmp_path / "shot.png")
    assert (tmp_path / "shot.png").read_bytes()[:4] == b"\x89PNG"


def test_the_zoo_report_renders_in_headless_chromium(tmp_path):
    zoo = REPO / "zoo" / "runs"
    if not zoo.is_dir():
        pytest.skip("no zoo/runs in this checkout")
    data = REPO.parent / "shared" / "data" / "fer2013.csv.gz"
    args = [str(zoo), "--out", str(tmp_path / "zoo-report"), "--quiet", "--bootstrap", "200"]
    assert main(args + (["--data", str(data)] if data.is_file() else [])) == 0
    check_in_browser(tmp_path / "zoo-report" / "index.html",
                     json.loads((tmp_path / "zoo-report" / "summary.json").read_text()))


if __name__ == "__main__":  # python tests/test_html_report.py PAGE.html OUT.png
    page_path, png_path = Path(sys.argv[1]), Path(sys.argv[2])
    check_in_browser(page_path, json.loads((page_path.parent / "summary.json").read_text()), png_path)
    print(f"wrote {png_path}")
