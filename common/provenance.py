"""What a table records about the code that made it: the project's version and the versions of the
libraries that can move a descriptor. Read from package metadata, so nothing is imported."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

PROJECT_NAME = "emotiw-video"

# The libraries whose version can move descriptors (decoding, detection, resizing, alignment, the
# network and its runtime), by distribution name; the first installed name of each entry counts.
DESCRIPTOR_LIBRARIES: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "timm": ("timm",),
    "pillow": ("pillow",),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless", "opencv-contrib-python"),
    "pyav": ("av",),  # the pipeline's decoder (decord reads only for the plain reference loop)
    "facenet-pytorch": ("facenet-pytorch",),
}
# The CPU runtime of each backend that has one: the name it is recorded under and its distributions.
# Only the runtime that ran is recorded.
RUNTIME_LIBRARIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "openvino": ("openvino", ("openvino",)), "onnx": ("onnxruntime", ("onnxruntime", "onnxruntime-gpu"))}


def project_version() -> str:
    try:
        return version(PROJECT_NAME)
    except PackageNotFoundError:  # running from a checkout that is not installed
        return "0+unknown"


def descriptor_library_versions(backend: str) -> dict[str, str | None]:
    """Installed versions of the libraries that make descriptors, with the runtime of ``backend``
    (a resolved backend); None for one that is not installed. Read from the package metadata,
    so nothing is imported."""
    wanted = dict(DESCRIPTOR_LIBRARIES)
    if backend in RUNTIME_LIBRARIES:
        runtime, distributions = RUNTIME_LIBRARIES[backend]
        wanted[runtime] = distributions
    found: dict[str, str | None] = {}
    for name, distributions in wanted.items():
        found[name] = None
        for distribution in distributions:
            try:
                found[name] = version(distribution)
                break
            except PackageNotFoundError:
                continue
    return found
