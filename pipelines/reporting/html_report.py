"""The report page: one self-contained HTML file with inline CSS and SVG, built as a string.

No script, font, style sheet or image comes from anywhere else, so the file opens from disk
with no server and no network. Every text that comes from the data (keys, labels, errors,
paths) goes through :func:`html.escape`. Per video the figure shows, on one time axis: a band of
the predicted label per window, the per-class scores as lines (stretches without a face
hatched), and the face tracks as bars in lanes below, each named by its id and label.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from html import escape

import numpy as np

from pipelines.reporting.timeline_data import (
    Failure,
    ReportData,
    TimelinePoint,
    TrackSpan,
    VideoTimeline,
    label_runs,
    pack_lanes,
)

# Colours people read as the emotion where the class is known (AFEW, HSEmotion, VGAF names),
# then a qualitative palette for anything else.
KNOWN_COLOURS = {
    "angry": "#d62728", "anger": "#d62728", "contempt": "#8c564b", "disgust": "#5f9e2f",
    "fear": "#9467bd", "happy": "#e8a700", "happiness": "#e8a700", "neutral": "#7f8c99",
    "sad": "#1f77b4", "sadness": "#1f77b4", "surprise": "#17becf",
    "positive": "#2ca02c", "negative": "#d62728",
}
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")
UNLABELLED_COLOUR = "#a0aab4"

WIDTH, LEFT, RIGHT = 960, 72, 14
PLOT_WIDTH = WIDTH - LEFT - RIGHT
BAND_Y, BAND_H = 6, 14
CHART_Y, CHART_H = 28, 150
AXIS_H = 24
LANE_H, LANE_GAP = 18, 4
TIME_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)


# --- small pure helpers -----------------------------------------------------------------------

def class_colours(classes: Sequence[str]) -> dict[str, str]:
    """One colour per class: the familiar one for known emotion names, else the palette in order."""
    colours, spare = {}, iter(PALETTE * (len(classes) // len(PALETTE) + 1))
    for name in classes:
        colours[name] = KNOWN_COLOURS.get(name.lower()) or next(spare)
    return colours


def time_step(duration_s: float, max_ticks: int = 8) -> float:
    """The smallest round tick interval that puts at most ``max_ticks`` ticks on the axis."""
    for step in TIME_STEPS:
        if duration_s / step <= max_ticks:
            return step
    return TIME_STEPS[-1] * math.ceil(duration_s / (TIME_STEPS[-1] * max_ticks))


def format_time(seconds: float, scale_s: float) -> str:
    """``12.5 s`` on axes shorter than a minute, ``m:ss`` below an hour, ``h:mm:ss`` above."""
    if scale_s < 60:
        return f"{seconds:.1f} s" if seconds % 1 else f"{seconds:.0f} s"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if scale_s >= 3600 else f"{minutes}:{secs:02d}"


def value_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round tick values covering [low, high] (at most about ``count`` + 1 of them)."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks, value = [], first
    while value <= high + step * 1e-6:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 10))
    return ticks


def text_colour(background: str) -> str:
    """Black or white, whichever reads better on ``background`` (#rrggbb)."""
    r, g, b = (int(background[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return "#111" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.55 else "#fff"


def _f(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _attr(value: object) -> str:
    return escape(str(value), quote=True)


# --- the figure ---------------------------------------------------------------------------------

class _Axis:
    """Maps times and values to the figure's coordinates."""

    def __init__(self, duration_s: float, low: float, high: float) -> None:
        self.duration_s, self.low, self.high = duration_s, low, high

    def x(self, seconds: float) -> float:
        return LEFT + PLOT_WIDTH * min(max(seconds / self.duration_s, 0.0), 1.0)

    def y(self, value: float) -> float:
        return CHART_Y + CHART_H * (1 - (value - self.low) / (self.high - self.low))


def _value_range(points: Sequence[TimelinePoint], probability: bool) -> tuple[float, float, list[float]]:
    if probability:
        return 0.0, 1.0, [0.0, 0.25, 0.5, 0.75, 1.0]
    # Classifier scores (SVM margins) are drawn with their zero, the decision boundary, in view.
    values = [v for p in points if p.has_face for v in p.scores if v is not None]
    low, high = (min(min(values), 0.0), max(max(values), 0.0)) if values else (0.0, 1.0)
    ticks = value_ticks(low, high)
    return ticks[0], ticks[-1], ticks


def _score_lines(points: Sequence[TimelinePoint], classes: Sequence[str], colours: dict[str, str],
                 axis: _Axis) -> list[str]:
    """One polyline per class and unbroken run of scored points (a lone point is a dot).

    A line breaks where a point has no score (no face) and across a gap of more than one and
    a half point widths, so a missing stretch is never drawn as a straight interpolation.
    """
    if not points or not classes:
        return []
    start = np.array([p.start_s for p in points])
    end = np.array([p.end_s for p in points])
    values = np.array([[np.nan if not p.has_face or i >= len(p.scores) or p.scores[i] is None else p.scores[i]
                        for i in range(len(classes))] for p in points], dtype=np.float64)
    xs = LEFT + PLOT_WIDTH * np.clip((start + end) / 2 / axis.duration_s, 0.0, 1.0)
    ys = CHART_Y + CHART_H * (1 - (values - axis.low) / (axis.high - axis.low))
    gap_before = np.r_[False, start[1:] - end[:-1] > 1.5 * (end[:-1] - start[:-1])]
    parts = []
    for i, name in enumerate(classes):
        valid = ~np.isnan(values[:, i])
        starts_run = valid & (~np.r_[False, valid[:-1]] | gap_before)
        scored = np.flatnonzero(valid)
        title = f"<title>{escape(name)}</title>"
        for members in np.split(scored, np.flatnonzero(starts_run[scored])[1:]):
            if len(members) == 0:
                continue
            if len(members) == 1:
                j = members[0]
                parts.append(f'<circle class="score-dot" data-class="{_attr(name)}" cx="{xs[j]:.1f}" '
                             f'cy="{ys[j, i]:.1f}" r="2.5" fill="{colours[name]}">{title}</circle>')
            else:
                coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs[members].tolist(), ys[members, i].tolist()))
                parts.append(f'<polyline class="score-line" data-class="{_attr(name)}" points="{coords}" fill="none" '
                             f'stroke="{colours[name]}" stroke-width="1.6" stroke-linejoin="round">{title}</polyline>')
    return parts


def _range_text(start: float, end: float, scale: float) -> str:
    return f"{format_time(start, scale)}–{format_time(end, scale)}"


def render_timeline(video: VideoTimeline, classes: Sequence[str], colours: dict[str, str], *,
                    probability: bool, figure_id: str) -> str:
    """The SVG figure of one video (an empty string when it has nothing to draw)."""
    duration = video.duration_s
    if not duration or duration <= 0:
        return ""
    points = video.points
    low, high, ticks = _value_range(points, probability)
    axis = _Axis(duration, low, high)
    hatch = f"hatch-{figure_id}"
    tracks = video.tracks or ()
    lanes = pack_lanes(tracks)
    n_lanes = max(lanes) + 1 if lanes else 1
    tracks_y = CHART_Y + CHART_H + AXIS_H
    height = tracks_y + n_lanes * (LANE_H + LANE_GAP) + 6
    out = [f'<svg class="timeline" id="{figure_id}" viewBox="0 0 {WIDTH} {height}" width="100%" '
           f'role="img" aria-label="timeline of {_attr(video.key)}">',
           f'<defs><pattern id="{hatch}" width="6" height="6" patternUnits="userSpaceOnUse" '
           f'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f3f4f6"/>'
           f'<line x1="0" y1="0" x2="0" y2="6" stroke="#b8bec6" stroke-width="2"/></pattern></defs>']
    # Grid and axes.
    step = time_step(duration)
    out.append('<g class="grid">')
    t = 0.0
    while t <= duration + 1e-9:
        x = axis.x(t)
        anchor = "end" if x > WIDTH - RIGHT - 20 else "middle"  # the last label stays inside the figure
        out.append(f'<line x1="{_f(x)}" y1="{CHART_Y}" x2="{_f(x)}" y2="{CHART_Y + CHART_H}" stroke="#eceef1"/>'
                   f'<text class="tick" x="{_f(x)}" y="{CHART_Y + CHART_H + 15}" text-anchor="{anchor}">'
                   f'{escape(format_time(t, duration))}</text>')
        t += step
    for value in ticks:
        y = axis.y(value)
        stroke = "#9aa3ad" if value == 0 and low < 0 else "#eceef1"
        out.append(f'<line x1="{LEFT}" y1="{_f(y)}" x2="{LEFT + PLOT_WIDTH}" y2="{_f(y)}" stroke="{stroke}"/>'
                   f'<text class="tick" x="{LEFT - 6}" y="{_f(y + 4)}" text-anchor="end">{value:g}</text>')
    out.append('</g>')
    out.append(f'<text class="lane-name" x="{LEFT - 6}" y="{BAND_Y + 11}" text-anchor="end">label</text>')
    # The label band: one rectangle per run of windows of one label.
    out.append('<g class="label-band">')
    for run in label_runs(points):
        x0, x1 = axis.x(run.start_s), axis.x(run.end_s)
        fill = f"url(#{hatch})" if not run.has_face else colours.get(run.label or "", UNLABELLED_COLOUR)
        what = (run.label or "scored") if run.has_face else "no face"
        out.append(f'<rect class="band{"" if run.has_face else " faceless-band"}" x="{_f(x0)}" y="{BAND_Y}" '
                   f'width="{_f(max(x1 - x0, 0.8))}" height="{BAND_H}" fill="{fill}">'
                   f'<title>{escape(what)}, {escape(_range_text(run.start_s, run.end_s, duration))}</title></rect>')
    out.append('</g>')
    # Stretches without a face, across the chart.
    out.append('<g class="faceless-marks">')
    for start, end in video.faceless_spans:
        x0, x1 = axis.x(start), axis.x(end)
        out.append(f'<rect class="faceless" x="{_f(x0)}" y="{CHART_Y}" width="{_f(max(x1 - x0, 0.8))}" '
                   f'height="{CHART_H}" fill="url(#{hatch})"><title>no face, '
                   f'{escape(_range_text(start, end, duration))}</title></rect>')
    out.append('</g>')
    lines = _score_lines(points, classes, colours, axis)
    out.append('<g class="scores">' + "".join(lines) + '</g>')
    if not lines:
        out.append(f'<text class="empty" x="{LEFT + PLOT_WIDTH / 2}" y="{CHART_Y + CHART_H / 2}" '
                   f'text-anchor="middle">no scores to draw</text>')
    out.append(f'<rect x="{LEFT}" y="{CHART_Y}" width="{PLOT_WIDTH}" height="{CHART_H}" fill="none" stroke="#c9ced4"/>')
    # Tracks, in lanes: who is on screen when.
    out.append(f'<text class="lane-name" x="{LEFT - 6}" y="{tracks_y + 13}" text-anchor="end">tracks</text>')
    out.append('<g class="tracks">')
    if video.tracks is None or not tracks:
        message = "no track rows for this output" if video.tracks is None else "no face tracks"
        out.append(f'<text class="empty" x="{LEFT + 4}" y="{tracks_y + 13}">{message}</text>')
    for track, lane in zip(tracks, lanes):
        out.append(_track_bar(track, lane, tracks_y, axis, colours, duration))
    out.append('</g></svg>')
    return "".join(out)


def _track_bar(track: TrackSpan, lane: int, top: float, axis: _Axis, colours: dict[str, str], scale: float) -> str:
    x0, x1 = axis.x(track.start_s), axis.x(track.end_s)
    width = max(x1 - x0, 2.0)
    y = top + lane * (LANE_H + LANE_GAP)
    fill = colours.get(track.label or "", UNLABELLED_COLOUR)
    name = f"#{track.track_id}" + (f" {track.label}" if track.label else "")
    frames = f", {track.n_frames} frames" if track.n_frames is not None else ""
    when = _range_text(track.start_s, track.end_s, scale)
    title = f"track {track.track_id}: {track.label or 'no label'}, {when}{frames}"
    bar = (f'<g class="track-bar"><rect class="track" data-track-id="{track.track_id}" x="{_f(x0)}" y="{y}" '
           f'width="{_f(width)}" height="{LANE_H}" rx="3" fill="{fill}"><title>{escape(title)}</title></rect>')
    if width >= 7 * len(name) + 8:  # the name fits inside the bar
        # A style, not a fill attribute: the page's CSS for svg text would override an attribute.
        bar += (f'<text class="track-name" x="{_f(x0 + 5)}" y="{y + 13}" style="fill:{text_colour(fill)}">'
                f'{escape(name)}</text>')
    return bar + "</g>"


# --- the page -------------------------------------------------------------------------------------

STYLE = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif;
       margin: 0; color: #1d232a; background: #f6f7f9; }
main { max-width: 1080px; margin: 0 auto; padding: 24px 28px 60px; }
h1 { font-size: 22px; margin: 0 0 4px; word-break: break-all; }
h2 { font-size: 17px; margin: 32px 0 10px; }
h3 { font-size: 15px; margin: 0; word-break: break-all; }
.sub { color: #5b6670; font-size: 13px; }
.notice { background: #fff7e0; border: 1px solid #f0d68a; border-radius: 6px; padding: 8px 12px; margin: 8px 0;
          font-size: 13px; }
.group { margin: 10px 0; }
.group-title { font-size: 12px; color: #5b6670; text-transform: uppercase; letter-spacing: .04em; margin-bottom: 4px; }
.tiles { display: flex; flex-wrap: wrap; gap: 8px; }
.tile { background: #fff; border: 1px solid #e1e5ea; border-radius: 6px; padding: 6px 12px; min-width: 72px; }
.tile b { display: block; font-size: 18px; }
.tile span { font-size: 12px; color: #5b6670; }
.tile.bad b { color: #c0392b; }
table { border-collapse: collapse; background: #fff; font-size: 13px; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eceef1; vertical-align: top; }
th { background: #f0f2f5; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.error { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; white-space: pre-wrap;
           word-break: break-word; }
table.details { width: auto; }
.badge { display: inline-block; border-radius: 9px; padding: 0 8px; font-size: 12px; background: #e6e9ed; }
.badge.ok { background: #dcf2e3; color: #1e6b3a; }
.badge.error, .badge.failed_permanently { background: #fbe0dd; color: #a12a1f; }
.chip { display: inline-block; border-radius: 3px; padding: 0 6px; font-size: 12px; }
section.video { background: #fff; border: 1px solid #e1e5ea; border-radius: 8px; padding: 14px 16px; margin: 14px 0; }
.video-head { display: flex; gap: 10px; align-items: baseline; flex-wrap: wrap; }
.meta { color: #5b6670; font-size: 12.5px; margin: 4px 0 6px; }
svg.timeline { display: block; margin: 6px 0; }
svg text { font-size: 11px; fill: #5b6670; }
svg text.track-name { font-size: 11px; font-weight: 600; }
svg text.empty { font-style: italic; fill: #8a949e; }
ul.legend { list-style: none; padding: 0; margin: 2px 0 6px; display: flex; flex-wrap: wrap; gap: 4px 14px;
            font-size: 12.5px; }
ul.legend li { display: flex; align-items: center; gap: 5px; }
.swatch { width: 14px; height: 10px; border-radius: 2px; display: inline-block; }
.swatch.faceless { background: repeating-linear-gradient(45deg, #b8bec6 0 2px, #f3f4f6 2px 5px);
                   border: 1px solid #d5d9de; }
details { font-size: 13px; margin-top: 4px; }
details table { margin-top: 6px; }
a { color: #1f5fa8; }
.top { font-size: 12px; }
"""


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _tiles(counts: Iterable[tuple[str, int | str]]) -> str:
    tiles = []
    for name, value in counts:
        bad = " bad" if name in ("failed", "error", "failed permanently", "permanently failed") and value else ""
        shown = f"{value:,}" if isinstance(value, int) else escape(str(value))
        tiles.append(f'<div class="tile{bad}"><b>{shown}</b><span>{escape(name)}</span></div>')
    return '<div class="tiles">' + "".join(tiles) + "</div>"


def _failures_table(failures: Sequence[Failure]) -> str:
    if not failures:
        return '<p class="sub" id="no-failures">No failures.</p>'
    show_attempts = any(f.attempts is not None for f in failures)
    head = ("<tr><th>video</th><th>status</th>" + ('<th class="num">attempts</th>' if show_attempts else "")
            + "<th>error</th></tr>")
    rows = []
    for i, f in enumerate(failures):
        attempts = f'<td class="num">{"" if f.attempts is None else f.attempts}</td>' if show_attempts else ""
        rows.append(f'<tr id="f{i}"><td>{escape(f.key)}</td><td><span class="badge {_attr(f.status)}">'
                    f'{escape(f.status)}</span></td>{attempts}<td class="error">{escape(f.error or "")}</td></tr>')
    return f'<table class="failures">{head}{"".join(rows)}</table>'


def _legend(classes: Sequence[str], colours: dict[str, str]) -> str:
    items = [f'<li><span class="swatch" style="background:{colours[c]}"></span>{escape(c)}</li>' for c in classes]
    items.append('<li><span class="swatch faceless"></span>no face</li>')
    return '<ul class="legend">' + "".join(items) + "</ul>"


def _chip(label: str | None, colours: dict[str, str]) -> str:
    if not label:
        return ""
    # A dataset label need not be one of the trace's classes (AFEW "Happy" beside HSEmotion "Happiness").
    colour = colours.get(label) or KNOWN_COLOURS.get(label.lower(), UNLABELLED_COLOUR)
    return f'<span class="chip" style="background:{colour};color:{text_colour(colour)}">{escape(label)}</span>'


def _video_facts(video: VideoTimeline) -> dict[str, str]:
    duration = video.duration_s
    faceless_s = sum(end - start for start, end in video.faceless_spans)
    return {
        "length": format_time(duration, duration) if duration else "",
        "with face": f"{sum(p.merged for p in video.points if p.has_face):,}" if video.points else "",
        "faceless": format_time(faceless_s, duration) if video.points and duration else "",
        "tracks": "" if video.tracks is None else f"{len(video.tracks):,}",
    }


def _index(data: ReportData, colours: dict[str, str]) -> str:
    head = (f"<tr><th>video</th><th>status</th><th>{escape(data.label_name)}</th><th class='num'>length</th>"
            f"<th class='num'>{escape(data.point_name)} with a face</th><th class='num'>time without a face</th>"
            "<th class='num'>tracks</th></tr>")
    rows = []
    for i, video in enumerate(data.videos):
        facts = _video_facts(video)
        status = f'<span class="badge {_attr(video.status)}">{escape(video.status)}</span>' if video.status else ""
        rows.append(f'<tr><td><a href="#v{i}">{escape(video.key)}</a></td><td>{status}</td>'
                    f'<td>{_chip(video.label, colours)}</td><td class="num">{facts["length"]}</td>'
                    f'<td class="num">{facts["with face"]}</td><td class="num">{facts["faceless"]}</td>'
                    f'<td class="num">{facts["tracks"]}</td></tr>')
    return f'<table class="index">{head}{"".join(rows)}</table>'


def _tracks_table(video: VideoTimeline) -> str:
    if not video.tracks:
        return ""
    scale = video.duration_s or 0.0
    rows = "".join(
        f'<tr><td class="num">{t.track_id}</td><td>{escape(t.label or "")}</td>'
        f'<td class="num">{escape(format_time(t.start_s, scale))}</td>'
        f'<td class="num">{escape(format_time(t.end_s, scale))}</td>'
        f'<td class="num">{"" if t.n_frames is None else t.n_frames}</td></tr>' for t in video.tracks)
    return (f"<details><summary>{_count(len(video.tracks), 'track')}</summary>"
            "<table class='tracks'><tr><th class='num'>track</th>"
            f"<th>label</th><th class='num'>from</th><th class='num'>to</th><th class='num'>frames</th></tr>{rows}"
            "</table></details>")


def _video_section(index: int, video: VideoTimeline, data: ReportData, colours: dict[str, str]) -> str:
    facts = _video_facts(video)
    meta = []
    if facts["length"]:
        meta.append(f"length {facts['length']}")
    if video.points:
        averaged = max(p.merged for p in video.points)
        meta.append(f"{facts['with face']} {data.point_name} with a face, {facts['faceless']} without"
                    + (f" (up to {averaged} averaged per point)" if averaged > 1 else ""))
    if video.tracks is not None:
        meta.append(_count(len(video.tracks), "track"))
    if video.n_frames is not None:
        faces = f" ({video.n_face_frames:,} with a face)" if video.n_face_frames is not None else ""
        meta.append(f"{video.n_frames:,} frames{faces}")
    status = f'<span class="badge {_attr(video.status)}">{escape(video.status)}</span>' if video.status else ""
    label = f'{escape(data.label_name)} {_chip(video.label, colours)}' if video.label else ""
    figure = render_timeline(video, data.classes, colours, probability=data.value_name == "probability",
                             figure_id=f"t{index}")
    notes = "".join(f'<div class="notice">{escape(n)}</div>' for n in video.notes)
    body = (figure + _legend(data.classes, colours)) if figure else '<p class="sub">No windows or tracks to draw.</p>'
    return (f'<section class="video" id="v{index}"><div class="video-head"><h3>{escape(video.key)}</h3>{status}'
            f'<span class="sub">{label}</span></div><div class="meta">{escape(" · ".join(meta))}</div>{notes}'
            f'{body}{_tracks_table(video)}<div class="top"><a href="#index">index</a></div></section>')


def render_report(data: ReportData) -> str:
    """The whole page as one HTML string."""
    colours = class_colours(data.classes)
    sources = " · ".join(f"{escape(what)}: <code>{escape(where)}</code>" for what, where in data.sources)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        # Nothing may be fetched: a policy that forbids every source but the page's own inline parts.
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>{escape(data.title)}</title><style>{STYLE}</style></head><body><main>",
        f"<h1>{escape(data.title)}</h1><div class='sub'>{sources}"
        + (f" · made {escape(data.generated_at)}" if data.generated_at else "") + "</div>",
    ]
    parts += [f'<div class="notice missing">{escape(m)}</div>' for m in data.missing]
    parts.append("<h2 id='run'>Run</h2>")
    for title, counts in data.counts:
        parts.append(f'<div class="group"><div class="group-title">{escape(title)}</div>{_tiles(counts)}</div>')
    if data.details:
        parts.append('<table class="details">' + "".join(
            f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in data.details) + "</table>")
    parts.append(f"<h2 id='failures'>Failures ({len(data.failures)})</h2>{_failures_table(data.failures)}")
    shown = str(len(data.videos))
    if data.videos_total > len(data.videos):
        shown = f"{len(data.videos)} of {data.videos_total}"
    parts.append(f"<h2 id='index'>Videos ({shown})</h2>")
    if data.videos:
        parts.append(_index(data, colours))
        if data.classes:
            parts.append(f'<p class="sub">Lines: {escape(data.value_name)} per class over time; the band above '
                         'them: the label of each window; bars below: face tracks (who is on screen when).</p>')
    else:
        parts.append('<p class="sub">No videos to draw.</p>')
    parts += [_video_section(i, v, data, colours) for i, v in enumerate(data.videos)]
    parts.append("</main></body></html>")
    return "\n".join(parts)
