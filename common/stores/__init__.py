"""Where outputs live: local folders and buckets behind a few functions, conditional and ranged access,
and publishing a staged output whole."""
