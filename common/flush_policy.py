"""How often workers write what they finished: the defaults of every shard writer and of ``jobs.score``'s
``--flush-clips`` / ``--flush-seconds``. A module of its own so that a job's ``--help`` reads them without
loading pandas or Arrow."""

FLUSH_EVERY_ROWS = 50
FLUSH_EVERY_S = 60.0
"""Finished clip rows reach storage at least this often (per worker), so a killed run loses little."""
