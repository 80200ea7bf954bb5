"""The page as text: escaped, self-contained, with round axes (the drawing itself: test_report_browser)."""

from __future__ import annotations

import re
from html import escape

import pytest

from pipelines.reporting.html_report import class_colours, format_time, render_report, time_step, value_ticks
from pipelines.reporting.timeline_data import Failure, ReportData, TimelinePoint, TrackSpan, VideoTimeline

HOSTILE = '<img src="http://example.com/x.png" onerror="alert(1)">'


def _data() -> ReportData:
    video = VideoTimeline(key=f"clips/{HOSTILE}.mp4", status="ok", label="Happy",
                          points=(TimelinePoint(0, 10, True, "Happy", (0.5, -0.5)), TimelinePoint(10, 20, False)),
                          tracks=(TrackSpan(1, 0, 20, 500, "Happy"),))
    return ReportData(title=f"run {HOSTILE}", sources=(("scores", f"/srv/{HOSTILE}"),), classes=("Happy", "Sad"),
                      value_name="classifier score", counts=(("Last run", (("new", 1),)),),
                      failures=(Failure(HOSTILE, "error", f"cannot open {HOSTILE}", 1),), videos=(video,),
                      videos_total=1, missing=(f"note {HOSTILE}",))


def test_text_from_the_data_is_escaped_everywhere():
    page = render_report(_data())
    assert "<img" not in page and "onerror=\"" not in page
    assert page.count("&lt;img src=&quot;http://example.com/x.png&quot; onerror=&quot;alert(1)&quot;&gt;") >= 5


def test_the_page_refers_to_nothing_outside_itself():
    page = render_report(_data())
    without_data = page.replace(escape(HOSTILE), "")  # the escaped hostile text is text, never a reference
    assert not re.search(r"https?://|<script|<link|<iframe|@import|\bsrc=", without_data)
    assert set(re.findall(r"url\(([^)]*)\)", page)) == {"#hatch-t0"}
    assert "default-src 'none'" in page  # a browser refuses any fetch the page might still attempt


def test_time_axis_steps_and_labels_are_round():
    assert time_step(2.0) == 0.5 and time_step(95) == 15 and time_step(7200) == 900
    assert [format_time(s, 30) for s in (0, 2.5, 12)] == ["0 s", "2.5 s", "12 s"]
    assert format_time(95, 95) == "1:35" and format_time(3725, 7200) == "1:02:05"


def test_value_ticks_cover_the_range_at_round_values():
    assert value_ticks(-1.37, 0.42) == [-1.5, -1.0, -0.5, 0.0, 0.5]
    assert value_ticks(0.0, 1.0) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_known_emotions_get_their_usual_colours_and_others_distinct_ones():
    colours = class_colours(["Happy", "happiness", "Sad", "Custom A", "Custom B"])
    assert colours["Happy"] == colours["happiness"] != colours["Sad"]
    assert colours["Custom A"] != colours["Custom B"]


@pytest.mark.parametrize("tracks, text", [(None, "no track rows for this output"), ((), "no face tracks")])
def test_a_video_without_tracks_says_why(tracks, text):
    data = _data()
    video = VideoTimeline("v", points=(TimelinePoint(0, 10, True, "Sad", (0.1, 0.2)),), tracks=tracks)
    page = render_report(ReportData(**{**data.__dict__, "videos": (video,)}))
    assert text in page
