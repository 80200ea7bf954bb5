"""Where networks run: torch eager, or a cached ONNX export on OpenVINO or ONNX Runtime (what ``auto`` picks)."""
