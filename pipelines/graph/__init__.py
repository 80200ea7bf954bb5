"""The Beam graphs: planning elements, DoFns over the extraction code, shard-writing steps, and the runs
of extraction, face export and scoring pipelines."""
