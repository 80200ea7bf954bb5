"""Scoring an archive night after night: the planning state, the run folders and latest view, the lock,
and a night's run."""
