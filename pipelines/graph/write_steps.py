"""The step that ends every graph: clip rows written as Parquet shards by the workers themselves.

Beam's Dask runner computes only the last step of a graph (and what it depends on), and Beam's
file sinks branch inside, so they would silently write nothing there; a step that writes its own
files keeps the graph one chain.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa

from common.flush_policy import FLUSH_EVERY_ROWS, FLUSH_EVERY_S
from common.parquet_io import write_shard
from common.schema import descriptor_table_schema
from pipelines.extraction.clip_records import ClipResult
from pipelines.extraction.settings import ExtractionConfig

log = logging.getLogger(__name__)

class WriteShardsFn(beam.DoFn):
    """Write clip rows as Parquet shards in the staging folder; pass anything else on.

    Rows are written every ``flush_rows`` rows, at the end of the bundle, and, when
    ``flush_seconds`` is set, by a timer once the oldest buffered row has waited that long (a
    slow next clip does not hold finished ones back): what is written survives a kill.
    ``schema`` replaces the descriptor table's schema when a post-processing step changed the
    rows. Nothing is emitted from ``finish_bundle``: the Dask runner drops it, and the job reads
    the shards back from the staging folder anyway.
    """

    def __init__(self, config: ExtractionConfig, provenance: dict, clips_dir: str, schema: pa.Schema | None = None,
                 flush_rows: int = FLUSH_EVERY_ROWS, flush_seconds: float | None = FLUSH_EVERY_S) -> None:
        self._config = config
        self._provenance = provenance
        self._clips_dir = clips_dir
        self._schema = schema
        self._flush_rows = flush_rows
        self._flush_seconds = flush_seconds
        self._buffer: list[dict] = []
        self._oldest = 0.0
        self._lock: threading.Lock | None = None
        self._stop: threading.Event | None = None

    def start_bundle(self) -> None:
        self._buffer = []
        self._lock = threading.Lock()  # made here: locks and events do not pickle
        if self._flush_seconds is not None:
            self._stop = threading.Event()
            threading.Thread(target=self._flush_when_old, args=(self._stop,), daemon=True,
                             name="flush-shards").start()

    def process(self, element: Any) -> Iterator[Any]:
        if not isinstance(element, ClipResult):
            yield element  # a part of a split clip, on its way to be merged
            return
        assert self._lock is not None
        with self._lock:
            if not self._buffer:
                self._oldest = time.monotonic()
            self._buffer.append(element.row)
            if len(self._buffer) >= self._flush_rows:
                self._flush()

    def finish_bundle(self) -> None:
        if self._stop is not None:
            self._stop.set()
        assert self._lock is not None
        with self._lock:
            self._flush()

    def _flush_when_old(self, stop: threading.Event) -> None:
        assert self._flush_seconds is not None and self._lock is not None
        lock = self._lock
        while not stop.wait(min(1.0, self._flush_seconds / 4)):
            with lock:
                if self._buffer and time.monotonic() - self._oldest >= self._flush_seconds:
                    batch = list(self._buffer)
                    try:
                        self._flush()
                    except Exception as exc:  # noqa: BLE001 - a thread cannot fail the bundle; the next flush retries
                        self._buffer = batch
                        log.warning("timed flush of %d rows failed (%s); they stay buffered", len(batch), exc)

    def _flush(self) -> None:
        rows, self._buffer = self._buffer, []
        if rows:
            schema = self._schema or descriptor_table_schema(self._config.layout, self._provenance)
            write_shard(rows, self._clips_dir, schema)
