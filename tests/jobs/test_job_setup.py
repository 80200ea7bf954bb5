"""What every job does the same way: --help without the heavy libraries, unknown flags refused,
Beam's own flags passed on, unusable output folders refused before any work (exit code 2)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from common.errors import OutputPathError
from jobs import evaluate, extract, score, train
from jobs.job_setup import check_output_folder, parse_job_args, unknown_beam_flags

ROOT = Path(__file__).parents[2]
HEAVY = {"torch", "apache_beam", "openvino", "onnxruntime", "sklearn", "timm", "matplotlib", "decord", "cv2"}
JOBS_WITH_BEAM = ("extract",)


def _imported_modules(stderr: str) -> set[str]:
    """Top-level package names from ``python -X importtime`` output."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.mark.parametrize("job", ["extract", "train", "evaluate", "score", "faces", "finetune", "report"])
def test_help_answers_without_importing_torch_beam_or_the_runtimes(job):
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", f"jobs.{job}", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "usage: python -m jobs." in done.stdout
    imported = _imported_modules(done.stderr)
    assert "argparse" in imported  # the parsing of -X importtime's report works
    assert not imported & HEAVY, sorted(imported & HEAVY)


MISTYPED = [["--segments-frames", "500"], ["--frame-stpe", "5"], ["--direct_num_worker", "2"]]


@pytest.mark.parametrize("typo", MISTYPED)
def test_extract_refuses_a_flag_that_is_neither_its_own_nor_beams(typo, capsys):
    with pytest.raises(SystemExit) as exit_info:
        extract.run(["--dataset", "afew", *typo])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"unrecognized arguments: {' '.join(typo)}" in err and "Beam pipeline option" in err


def test_score_refuses_a_mistyped_flag_before_loading_anything(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        score.run(["--model", str(tmp_path / "absent"), "--input", str(tmp_path), "--output", str(tmp_path / "s"),
                   "--segments-frames", "500"])
    assert exit_info.value.code == 2 and "--segments-frames 500" in capsys.readouterr().err


@pytest.mark.parametrize("job, argv", [
    (train, ["--features", "f", "--output", "m"]),
    (evaluate, ["--model", "m", "--features", "f", "--output", "r"]),
])
def test_jobs_without_beam_refuse_every_unknown_flag_even_beams(job, argv, capsys):
    for extra in (["--frame-stpe", "5"], ["--runner", "dask"]):
        with pytest.raises(SystemExit) as exit_info:
            job.run([*argv, *extra])
        assert exit_info.value.code == 2 and extra[0] in capsys.readouterr().err


BEAM_FLAGS = [
    ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"],
    ["--runner", "dask", "--dask_client_address", "tcp://scheduler:8786", "--dask_npartitions", "2"],
    ["--runner=Dask", "--dask_client_address=tcp://scheduler:8786"],
    ["--runner", "FlinkRunner", "--flink_master", "host:8081", "--environment_type", "DOCKER",
     "--sdk_container_image", "image"],
    ["--runner", "SparkRunner", "--spark_master_url", "spark://host:7077", "--environment_type", "PROCESS"],
    ["--runner", "DataflowRunner", "--project", "p", "--region", "r", "--temp_location", "gs://b/tmp"],
    ["--runner", "local", "--experiments=a", "--save_main_session"],
]


@pytest.mark.parametrize("flags", BEAM_FLAGS)
def test_beams_own_flags_pass_to_beam(flags):
    args, beam_args = parse_job_args(extract.build_parser(), ["--dataset", "afew", "--frame-step", "5", *flags],
                                     beam=True)
    assert args.frame_step == 5 and beam_args == flags
    assert unknown_beam_flags(flags) == []


def test_a_beam_flag_with_a_bad_value_or_an_unknown_runner_is_a_usage_error(capsys):
    for flags, message in ((["--direct_num_workers", "two"], "invalid int value: 'two'"),
                           (["--runner", "no.such.Runner"], "cannot load no.such")):
        with pytest.raises(SystemExit) as exit_info:
            extract.run(["--dataset", "afew", *flags])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_an_output_that_is_a_file_or_lies_under_one_is_refused(tmp_path):
    file = tmp_path / "table.parquet"
    file.write_bytes(b"PAR1")
    for bad, message in ((file, "is an existing file"), (file / "out", "is a file, not a folder"),
                         (file / "a" / "b", "is a file, not a folder")):
        with pytest.raises(OutputPathError, match=message):
            check_output_folder(bad)
    check_output_folder(tmp_path / "new" / "deeper")  # to be created: fine
    check_output_folder(tmp_path, replaced_whole=True)
    check_output_folder("s3://bucket/features")  # remote: its storage layer answers for it


def test_every_job_exits_2_for_an_unwritable_output_before_any_work(tmp_path, capsys):
    file = tmp_path / "a-file"
    file.write_text("x")
    assert extract.run(["--dataset", "afew", "--output", str(file)]) == 2
    assert "is an existing file" in capsys.readouterr().err
    assert extract.run(["--dataset", "afew", "--output", str(tmp_path / "o"), "--frames-output", str(file / "f")]) == 2
    assert "--frames-output" in capsys.readouterr().err
    assert score.run(["--model", str(tmp_path), "--input", str(tmp_path), "--output", str(file)]) == 2
    assert "is an existing file" in capsys.readouterr().err
    for job, argv in ((train, ["--features", str(tmp_path)]), (evaluate, ["--model", "m", "--features", "f"])):
        with pytest.raises(SystemExit) as exit_info:
            job.run([*argv, "--output", str(file / "out")])
        assert exit_info.value.code == 2 and "is a file, not a folder" in capsys.readouterr().err


def _as_nobody(check) -> bool:
    """``check()`` in a forked child that, when the tests run as root, becomes user nobody first:
    permission bits do not stop root (and nobody could not start this venv's Python afresh). The
    child makes only os calls and runs already imported code, then leaves by ``os._exit``."""
    pid = os.fork()
    if pid == 0:
        code = 5
        try:
            if os.geteuid() == 0:
                os.setuid(65534)
            code = 0 if check() else 4
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _read_only_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="emotiw-read-only-"))  # under /tmp: reachable by any user
    os.chmod(folder, 0o555)
    return folder


def test_a_folder_the_user_may_not_write_in_is_refused():
    folder = _read_only_folder()

    def refused() -> bool:
        try:
            check_output_folder(folder / "model")
        except OutputPathError as exc:
            return f"no permission to write in {folder}" in str(exc)
        return False

    try:
        assert _as_nobody(refused)
    finally:
        os.chmod(folder, 0o755)
        shutil.rmtree(folder)


def test_finetune_refuses_an_output_it_could_not_swap_into_place_before_training(tmp_path, capsys):
    """The output may be writable while its parent is not: the staged folder beside it could then
    never be made nor swapped in."""
    from jobs import finetune

    assert finetune.run(["--images", str(tmp_path), "--output", "s3://bucket/model"]) == 2
    assert "fine-tuning writes a local folder" in capsys.readouterr().err
    folder = _read_only_folder()
    (folder / "model").mkdir()
    os.chmod(folder / "model", 0o777)

    def refused() -> bool:
        sys.stderr = io.StringIO()
        returned = finetune.run(["--images", str(folder), "--output", str(folder / "model")])
        return returned == 2 and f"no permission to write in {folder}" in sys.stderr.getvalue()

    try:
        assert _as_nobody(refused)
    finally:
        os.chmod(folder, 0o755)
        shutil.rmtree(folder)


@pytest.mark.parametrize("job", ["extract", "faces"])
def test_a_dataset_folder_without_clips_is_a_usage_error(job, tmp_path, capsys):
    from jobs import faces

    run = {"extract": extract.run, "faces": faces.run}[job]
    (tmp_path / "empty" / "Train").mkdir(parents=True)  # for faces: a VGAF layout with no clip in it
    (tmp_path / "empty" / "Train_labels.txt").write_text("Vid_name Label\n")
    dataset = ["--dataset", "folder"] if job == "extract" else ["--dataset", "vgaf"]
    code = run([*dataset, "--data-root", str(tmp_path / "empty"), "--output", str(tmp_path / "out")])
    assert code == 2
    assert f"error: no clips found under {tmp_path / 'empty'}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_job_starts_quietly_without_beams_bigquery_warning():
    # Beam warns at import that its BigQuery client is missing: nothing a user of these jobs can act on.
    code = ("from jobs.job_setup import configure_logging; configure_logging(); import logging; "
            "import apache_beam.io.gcp.internal.clients.bigquery; logging.getLogger('jobs.x').warning('own line')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "apitools" not in done.stderr and done.stderr.strip().endswith("own line")
