"""The tables' schemas and layouts, Parquet files, and the one shard writer with its rule for rows written twice."""
