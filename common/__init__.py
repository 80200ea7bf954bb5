"""The shared base every package may use: the error family, table schemas and provenance, storage
(local folders and buckets), atomic writes, Parquet I/O and shard writing. Imports nothing of the project."""
