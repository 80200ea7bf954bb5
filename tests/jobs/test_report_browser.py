"""The report page in a real browser: Debian's Chromium, headless, driven by selenium through chromedriver.

What is checked comes from the browser, not from the HTML text: the figures have a size on the
page, there is one bar per track of the data and one hatched mark per stretch without a face,
the legend names every class, the console stays clean, and the page fetched nothing (no
Resource Timing entry, no request in Chrome's network log but the page's own; a control page
that fetches a local file and an URL of a real server on 127.0.0.1 shows both probes see fetches).
One browser serves the whole module. ``.ci/run`` installs ``chromium`` and ``chromium-driver``.
"""

from __future__ import annotations

import http.server
import json
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest
from report_tables import CLASSES, FACE_CLASSES, standard_videos, write_extract_outputs, write_scores_output

from jobs import report

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium "
                                       "chromium-driver; .ci/run installs them)")


def _write_report(tmp: Path, *argv: str) -> Path:
    assert report.run([*argv, "--output", str(tmp)]) == 0
    return tmp / "index.html"


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    scores = write_scores_output(data / "scores", standard_videos())
    extract = write_extract_outputs(data / "extract")
    out = tmp_path_factory.mktemp("reports")
    return {
        "scores": scores, "extract": extract,
        "scores_page": _write_report(out / "scores", "--scores", str(scores)),
        "extract_page": _write_report(out / "extract", *(a for k, v in extract.items() for a in (f"--{k}", str(v)))),
    }


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _open(browser, page: Path) -> list[dict]:
    """Load a page from disk; the console messages it logged."""
    browser.get_log("browser")  # drop what earlier pages left
    browser.get(page.as_uri())
    return browser.get_log("browser")


BOXES_JS = """
const box = e => { const r = e.getBoundingClientRect(); return {w: r.width, h: r.height, x: r.x, y: r.y}; };
return Array.from(document.querySelectorAll('section.video')).map(s => ({
  key: s.querySelector('h3').textContent,
  svg: s.querySelector('svg.timeline') ? box(s.querySelector('svg.timeline')) : null,
  lines: Array.from(s.querySelectorAll('polyline.score-line, circle.score-dot')).map(box),
  lineClasses: Array.from(new Set(Array.from(s.querySelectorAll('.score-line, .score-dot')).map(e => e.dataset.class))),
  bands: Array.from(s.querySelectorAll('g.label-band rect')).map(box),
  tracks: Array.from(s.querySelectorAll('rect.track')).map(e => Object.assign(box(e), {id: e.dataset.trackId})),
  faceless: Array.from(s.querySelectorAll('rect.faceless')).map(box),
  legend: Array.from(s.querySelectorAll('ul.legend li')).map(li => li.textContent.trim()),
}));
"""


def _faceless_runs(windows: pd.DataFrame) -> int:
    """Runs of consecutive faceless windows, counted from the table itself."""
    flags = windows.sort_values("start_s")["has_face"].tolist()
    return sum(1 for i, f in enumerate(flags) if not f and (i == 0 or flags[i - 1]))


def test_the_scores_report_draws_every_video_with_its_windows_tracks_and_legend(browser, pages):
    console = _open(browser, pages["scores_page"])
    assert [m for m in console if m["level"] == "SEVERE"] == []
    sections = browser.execute_script(BOXES_JS)
    windows = pd.read_parquet(pages["scores"] / "windows")
    tracks = pd.read_parquet(pages["scores"] / "tracks")
    latest = pd.read_parquet(pages["scores"] / "latest")
    drawn = sorted(latest.loc[~latest.status.isin(["error", "failed_permanently"]), "key"])
    assert [s["key"] for s in sections] == drawn
    for section in sections:
        key, svg = section["key"], section["svg"]
        assert svg["w"] > 800 and svg["h"] > 150, key
        mine = windows[windows.key == key]
        assert len(section["tracks"]) == int((tracks.key == key).sum()), key
        assert sorted(int(t["id"]) for t in section["tracks"]) == sorted(tracks.loc[tracks.key == key, "track_id"])
        assert all(t["w"] > 0 and t["h"] > 0 for t in section["tracks"])
        assert len(section["faceless"]) == _faceless_runs(mine), key
        assert all(f["w"] > 0 and f["h"] > 100 for f in section["faceless"])
        assert section["legend"] == [*CLASSES, "no face"]
        assert section["bands"] and all(b["h"] > 0 for b in section["bands"])
        if mine.has_face.any():
            assert section["lineClasses"] == list(CLASSES), key
            for line in section["lines"]:  # inside the figure, with an extent
                assert line["w"] > 0 and line["h"] > 0
                assert svg["x"] <= line["x"] and line["x"] + line["w"] <= svg["x"] + svg["w"] + 1
        else:
            assert section["lines"] == []


def _requests_of(browser, page: Path) -> list[str]:
    """URLs the browser requested for ``page`` (itself included), from Chrome's network log."""
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent" and message["params"].get("documentURL") == page.as_uri():
            urls.append(message["params"]["request"]["url"])
    return urls


@pytest.fixture()
def http_server():
    """A real HTTP server on 127.0.0.1 that answers 404 to everything, and counts what it was asked."""
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the name http.server calls
            asked.append(self.path)
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", asked
    server.shutdown()
    server.server_close()


def test_the_page_fetches_nothing_and_the_probes_would_see_a_fetch(browser, pages, tmp_path, http_server):
    page = pages["scores_page"]
    browser.get_log("performance")
    _open(browser, page)
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    assert _requests_of(browser, page) == [page.as_uri()]
    # A page that does fetch, once from disk and once over HTTP: both probes see it.
    base, asked = http_server
    control = tmp_path / "control.html"
    shutil.copy(page, tmp_path / "local.svg")
    control.write_text(f'<!DOCTYPE html><html><body><img src="local.svg"><img src="{base}/x.png"></body></html>')
    browser.get_log("performance")
    _open(browser, control)
    assert browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)") == [
        f"{base}/x.png"]
    assert _requests_of(browser, control) == [control.as_uri(), (tmp_path / "local.svg").as_uri(), f"{base}/x.png"]
    assert asked == ["/x.png"]


def test_index_links_lead_to_their_video_and_failures_are_listed(browser, pages):
    _open(browser, pages["scores_page"])
    targets = browser.execute_script(
        "return Array.from(document.querySelectorAll('table.index a')).map(a => "
        "{ const t = document.getElementById(a.getAttribute('href').slice(1)); "
        "return [a.textContent, t ? t.querySelector('h3').textContent : null]; })")
    assert targets and all(text == heading for text, heading in targets)
    failures = browser.execute_script(
        "return Array.from(document.querySelectorAll('table.failures tr[id]')).map(r => r.cells[0].textContent)")
    assert failures == ["broken/<script>alert(1)</script>.mp4", "broken/gone.mp4"]


def test_the_extract_report_draws_the_trace_and_tracks_from_face_rows(browser, pages):
    console = _open(browser, pages["extract_page"])
    assert [m for m in console if m["level"] == "SEVERE"] == []
    sections = {s["key"]: s for s in browser.execute_script(BOXES_JS)}
    tracks = pd.read_parquet(pages["extract"]["tracks"])
    assert sorted(sections) == ["duo", "solo"]
    for key, section in sections.items():
        assert section["svg"]["w"] > 800
        assert len(section["tracks"]) == int((tracks.clip_id == key).sum())
        assert section["legend"] == [*FACE_CLASSES, "no face"]
        assert section["lines"] and all(line["w"] > 0 for line in section["lines"])
    assert len(sections["duo"]["faceless"]) == 2 and sections["solo"]["faceless"] == []
    names = browser.execute_script(
        "return Array.from(document.querySelectorAll('#v0 text.track-name')).map(t => t.textContent)")
    assert names == ["#1 Happiness", "#2 Sadness"]
