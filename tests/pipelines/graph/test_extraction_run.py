"""run_extraction's bookkeeping after the runner: every listed clip ends with exactly one row."""

import pandas as pd

from common.tables.schema import descriptor_table_schema
from common.tables.shards import write_rows
from jobs.job_setup import pipeline_options
from pipelines.extraction.clip_describer import clip_row
from pipelines.extraction.clip_records import ClipRef
from pipelines.extraction.settings import ExtractionConfig
from pipelines.extraction.statistics import ClipAccumulator
from pipelines.graph import extraction_run


def test_a_clip_the_runner_loses_gets_an_error_row_and_counts_as_failed(tmp_path, monkeypatch):
    config = ExtractionConfig(dataset="afew", featurizer="effnet_lite0_imagenet")
    provenance = config.provenance("0" * 64)
    refs = [ClipRef(f"c{i}", f"/videos/c{i}.avi", "afew") for i in range(3)]

    def runner_that_loses_the_last_clip(pipeline, refs, config, provenance, clips_dir, faces_dir, timeline=None):
        empty = ClipAccumulator(config.layout)
        write_rows([clip_row(r, empty, config.featurizer, None) for r in refs[:2]], clips_dir,
                   descriptor_table_schema(config.layout, provenance), "bundle")
        return pipeline | "Nothing" >> extraction_run.beam.Create([])

    monkeypatch.setattr(extraction_run, "describe_and_write", runner_that_loses_the_last_clip)
    summary = extraction_run.run_extraction(refs, config, provenance, tmp_path / "out", pipeline_options([]))
    table = pd.read_parquet(tmp_path / "out").set_index("clip_id")
    assert sorted(table.index) == ["c0", "c1", "c2"]
    assert table.loc["c2", "status"] == "error" and "no result came back" in table.loc["c2", "error"]
    assert summary.clips == 3 and summary.counts == {"ok": 0, "faceless": 2, "error": 1}
    assert summary.failures == {"c2": "no result came back from the runner"}
