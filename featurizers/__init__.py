"""Per-frame work: decode frames, detect and crop or align faces, embed faces."""
