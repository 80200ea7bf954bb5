"""jobs.report's command line: usage errors name their flag (exit 2) before anything is read; the page is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from report_tables import standard_videos, write_extract_outputs, write_scores_output

from jobs import report

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    return write_scores_output(tmp_path_factory.mktemp("scores"), standard_videos())


@pytest.mark.parametrize("argv, named", [
    (["--max-videos", "0"], "--max-videos"),
    (["--max-videos", "many"], "--max-videos"),
    (["--frames", "somewhere"], "--scores"),
    (["--output-dir", "x"], "--output-dir"),
])
def test_bad_flags_exit_2_naming_the_flag(scores, tmp_path, capsys, argv, named):
    with pytest.raises(SystemExit) as exit_info:
        report.run(["--scores", str(scores), "--output", str(tmp_path / "r"), *argv])
    assert exit_info.value.code == 2 and named in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flag", ["--scores", "--features", "--frames", "--windows", "--tracks"])
def test_a_missing_input_folder_exits_2_naming_its_flag(tmp_path, capsys, flag):
    with pytest.raises(SystemExit) as exit_info:
        report.run([flag, str(tmp_path / "absent"), "--output", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"{flag} {tmp_path / 'absent'}: no such folder" in err


def test_no_source_and_an_output_that_is_a_file_are_usage_errors(scores, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        report.run(["--output", str(tmp_path / "r")])
    assert exit_info.value.code == 2 and "give --scores" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        report.run(["--scores", str(scores), "--output", str(tmp_path / "file")])
    assert exit_info.value.code == 2 and "--output" in capsys.readouterr().err


def test_the_page_is_written_as_one_file_and_its_path_printed(scores, tmp_path):
    done = subprocess.run([sys.executable, "-m", "jobs.report", "--scores", str(scores), "--output",
                           str(tmp_path / "r"), "--max-videos", "2"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    page = tmp_path / "r" / "index.html"
    assert done.stdout.strip() == f"2 of 3 videos drawn, 2 failures listed -> {page}"
    assert "1 more videos are not drawn" in done.stderr
    assert [p.name for p in (tmp_path / "r").iterdir()] == ["index.html"]
    assert page.read_text().count('<section class="video"') == 2


def test_extract_tables_are_reported_without_scores(tmp_path):
    paths = write_extract_outputs(tmp_path / "x")
    assert report.run(["--features", str(paths["features"]), "--frames", str(paths["frames"]),
                       "--output", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "index.html").read_text().count('<section class="video"') == 2
