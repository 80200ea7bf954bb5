"""One clip, Beam-free: job settings, dataset listing, decoding chunks, faces to mergeable statistics,
segments of long clips and their merge."""
