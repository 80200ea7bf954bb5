"""Decoding: frames in chunks from a child process under a time limit (PyAV, numbered as decord numbers them)."""
