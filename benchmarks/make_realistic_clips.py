"""Make benchmark inputs at the resolutions and lengths users meet, from the samples' own material.

The shipped samples are 2-second clips at 320x256 and 640x360: they say little about speed or
memory on real footage. This script films the same public-domain scikit-image stills and group
scenes (see ``scripts/make_sample_videos.py`` for their licences) at real sizes:

* ``afew/Val_AFEW/<Class>/*.avi``: AFEW-like, 720x576, 25 fps, MPEG-4 Part 2 in AVI, one face;
* ``vgaf/Val/*.mp4`` with ``Val_labels.txt``: VGAF-like, 1280x720, 25 fps, H.264, 3-4 faces;
* ``hd/*.mp4``: archive-like, 1920x1080, 25 fps, H.264, one face (two clips);
* ``long/archive_640x360.mp4``: an archive video, 640x360, 25 fps, H.264, one face, long
  (``--long-frames``, default 5,000 frames = 3 min 20 s); and a short clip of the same scene
  (``long/short_640x360.mp4``) to compare memory with.

Nothing is committed: the files are large and made in a minute or two::

    python benchmarks/make_realistic_clips.py --out /tmp/realistic
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from make_sample_videos import AFEW_CLIPS, VGAF_CLIPS, clip_frames, skimage_photos, write_video  # noqa: E402

AFEW_REAL_SIZE = (720, 576)
VGAF_REAL_SIZE = (1280, 720)
HD_SIZE = (1920, 1080)
ARCHIVE_SIZE = (640, 360)


def make(out: Path, clip_frames_count: int, long_frames: int) -> list[Path]:
    """Write every benchmark clip under ``out``; returns their paths."""
    photos = skimage_photos()
    written = []
    jobs = []
    for clip in AFEW_CLIPS[:3]:  # three clips with one face
        name = Path(clip.path).name
        jobs.append((out / "afew" / "Val_AFEW" / Path(clip.path).parent.name / name, clip, AFEW_REAL_SIZE,
                     clip_frames_count))
    for clip in VGAF_CLIPS[:2]:  # two group scenes
        jobs.append((out / "vgaf" / "Val" / Path(clip.path).name, clip, VGAF_REAL_SIZE, clip_frames_count))
    for clip in AFEW_CLIPS[3:5]:  # two one-face clips as 1080p archive footage
        jobs.append((out / "hd" / (Path(clip.path).stem + ".mp4"), clip, HD_SIZE, clip_frames_count))
    # The archive video: a slow camera move over one face, as long as asked.
    archive = replace(AFEW_CLIPS[0], path="long/archive_640x360.mp4")
    jobs.append((out / "long" / "archive_640x360.mp4", archive, ARCHIVE_SIZE, long_frames))
    jobs.append((out / "long" / "short_640x360.mp4", archive, ARCHIVE_SIZE, clip_frames_count))
    for path, clip, size, frames in jobs:
        count = write_video(path, clip_frames(clip, photos, size, frames), size)
        logging.info("wrote %s: %d frames at %dx%d, %.1f MB", path, count, *size, path.stat().st_size / 1e6)
        written.append(path)
    (out / "vgaf" / "Val_labels.txt").write_text(
        "Vid_name Label\n" + "".join(f"{Path(c.path).stem} {i % 3 + 1}\n" for i, c in enumerate(VGAF_CLIPS[:2])))
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--clip-frames", type=int, default=100, help="frames of each AFEW/VGAF clip (default 4 s)")
    parser.add_argument("--long-frames", type=int, default=5000, help="frames of the archive video")
    args = parser.parse_args(argv)
    make(args.out, args.clip_frames, args.long_frames)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
