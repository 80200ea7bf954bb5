"""Wall time of one long clip on a Dask cluster, split into segments and unsplit.

    python benchmarks/make_realistic_clips.py --out /tmp/realistic
    python benchmarks/benchmark_segments_dask.py --data-root /tmp/realistic/long --clip archive_640x360.mp4

Starts a local ``distributed`` cluster of ``--workers`` single-thread worker processes (the
shape of a small real cluster: each worker one core), then runs ``jobs.extract`` on the clip
through Beam's Dask runner twice: with ``--segment-frames 0`` (the clip is one unit of work, so
one worker describes it while the others wait) and with ``--segment-frames N`` (its segments
spread over the workers). The job's own Dask partitioning is used, as a user gets it: the
driver lists the clip as planning elements estimated from its size, one partition each. Reports
both wall times (whole jobs, model loading included) and
checks that the two rows agree. Results go to ``benchmarks/results/segments_dask.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, required=True, help="folder holding the clip")
    parser.add_argument("--clip", required=True, help="file name of the clip inside --data-root")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--segment-frames", type=int, default=512)
    parser.add_argument("--frame-step", type=int, default=1)
    parser.add_argument("--save", type=Path, default=Path(__file__).resolve().parent / "results" / "segments_dask.json")
    args = parser.parse_args(argv)

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core per worker, torch included
    import numpy as np
    import pandas as pd
    from distributed import LocalCluster

    from featurizers.decoding.decode import FrameSampling
    from featurizers.embedding.registry import DEFAULT_FEATURIZER
    from jobs import extract
    from pipelines.extraction.clip_records import ClipRef
    from pipelines.extraction.settings import ExtractionConfig
    from pipelines.graph.planning import planning_elements

    work = Path(tempfile.mkdtemp(prefix="segments-dask-"))
    root = work / "videos"
    root.mkdir()
    os.symlink((args.data_root / args.clip).resolve(), root / args.clip)
    report: dict = {"clip": str(args.data_root / args.clip), "workers": args.workers, "threads_per_worker": 1,
                    "frame_step": args.frame_step}
    try:
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster:
            for label, segment_frames in (("unsplit", 0), ("split", args.segment_frames)):
                out = work / label
                started = time.perf_counter()
                code = extract.run(["--dataset", "folder", "--data-root", str(root), "--output", str(out),
                                    "--frame-step", str(args.frame_step), "--segment-frames", str(segment_frames),
                                    "--runner", "dask", "--dask_client_address", cluster.scheduler_address])
                seconds = time.perf_counter() - started
                row = pd.read_parquet(out).iloc[0]
                elements = planning_elements([ClipRef(args.clip, str(root / args.clip), "folder")],
                                             ExtractionConfig(dataset="folder", featurizer=DEFAULT_FEATURIZER,
                                                              sampling=FrameSampling(step=args.frame_step),
                                                              segment_frames=segment_frames))
                report[label] = {"segment_frames": segment_frames, "planning_elements": len(elements),
                                 "exit_code": code, "wall_s": round(seconds, 1),
                                 "frames": int(row.n_frames), "segments": int(row.n_segments),
                                 "frames_per_s": round(row.n_frames / seconds, 1), "status": row.status}
                report[f"{label}_descriptor"] = np.asarray(row.descriptor)
                print(json.dumps(report[label]))
        a, b = report.pop("split_descriptor"), report.pop("unsplit_descriptor")
        report["max_abs_descriptor_difference"] = float(np.abs(a - b).max())
        report["speedup_split_vs_unsplit"] = round(report["unsplit"]["wall_s"] / report["split"]["wall_s"], 2)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))
    args.save.parent.mkdir(parents=True, exist_ok=True)
    args.save.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
