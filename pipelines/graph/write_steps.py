"""The step that ends every graph: clip rows written as Parquet shards by the workers themselves.

Beam's Dask runner computes only the last step of a graph (and what it depends on), and Beam's
file sinks branch inside, so they would silently write nothing there; a step that writes its own
files keeps the graph one chain.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa

from common.flush_policy import FLUSH_EVERY_ROWS, FLUSH_EVERY_S
from common.tables.schema import descriptor_table_schema
from common.tables.shards import ShardWriter
from pipelines.extraction.clip_records import ClipResult
from pipelines.extraction.settings import ExtractionConfig


class WriteShardsFn(beam.DoFn):
    """Write clip rows as Parquet shards in the staging folder (:class:`common.tables.shards.ShardWriter`);
    pass anything else on.

    Rows are written every ``flush_rows`` rows, at the end of the bundle, and, when
    ``flush_seconds`` is set, once the oldest buffered row has waited that long: what is written
    survives a kill. ``schema`` replaces the descriptor table's schema when a post-processing step
    changed the rows. Nothing is emitted from ``finish_bundle``: the Dask runner drops it, and the
    job reads the shards back from the staging folder anyway.
    """

    def __init__(self, config: ExtractionConfig, provenance: dict, clips_dir: str, schema: pa.Schema | None = None,
                 flush_rows: int = FLUSH_EVERY_ROWS, flush_seconds: float | None = FLUSH_EVERY_S) -> None:
        self._config = config
        self._provenance = provenance
        self._clips_dir = clips_dir
        self._schema = schema
        self._flush_rows = flush_rows
        self._flush_seconds = flush_seconds
        self._writer: ShardWriter | None = None

    def start_bundle(self) -> None:
        # Made here, per bundle: its lock and timer thread do not pickle.
        schema = self._schema or descriptor_table_schema(self._config.layout, self._provenance)
        self._writer = ShardWriter(self._clips_dir, schema, flush_rows=self._flush_rows,
                                   flush_seconds=self._flush_seconds)

    def process(self, element: Any) -> Iterator[Any]:
        if not isinstance(element, ClipResult):
            yield element  # a part of a split clip, on its way to be merged
            return
        assert self._writer is not None
        self._writer.add([element.row])

    def finish_bundle(self) -> None:
        assert self._writer is not None
        self._writer.close()
