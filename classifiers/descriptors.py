"""Read descriptor tables into arrays, and check that tables and models belong together.

Training and evaluation only need a float matrix, the labels and a few flags per clip; this
module turns one Parquet file or a folder of them into exactly that (:class:`DescriptorSet`),
and refuses to mix descriptors that were made by different featurizers or layouts, because a
classifier fitted on one kind of descriptor is meaningless on another.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from common.errors import DatasetLayoutError, IncompatibleArtifactsError
from common.tables.schema import class_names, read_provenance

logger = logging.getLogger(__name__)

# The provenance entries that decide whether two sets of descriptors are interchangeable.
# weights_sha256 is compared only when both sides have one (hand-made tables may lack it).
IDENTITY_KEYS = ("featurizer", "layout")


@dataclass(frozen=True)
class DescriptorSet:
    """The columns of a descriptor table that classifiers use, as numpy arrays of equal length."""

    X: np.ndarray
    """float32, one descriptor per row (zeros for faceless and failed clips)."""
    labels: np.ndarray
    """object array of class names; None where the clip is unlabelled."""
    has_face: np.ndarray
    status: np.ndarray
    clip_ids: np.ndarray
    splits: np.ndarray
    provenance: dict[str, Any]
    sources: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.clip_ids)

    @property
    def featurizer(self) -> str:
        return str(self.provenance.get("featurizer"))

    @property
    def dataset(self) -> str | None:
        return self.provenance.get("dataset")

    @property
    def classes(self) -> tuple[str, ...]:
        """Class order: the provenance's list, else the dataset's, else the labels sorted."""
        listed = self.provenance.get("classes") or class_names(self.dataset or "folder")  # type: ignore[arg-type]
        if listed:
            return tuple(listed)
        return tuple(sorted({str(v) for v in self.labels if v is not None}))

    def take(self, mask: np.ndarray) -> DescriptorSet:
        """The rows where ``mask`` is true, provenance unchanged."""
        return replace(self, X=self.X[mask], labels=self.labels[mask], has_face=self.has_face[mask],
                       status=self.status[mask], clip_ids=self.clip_ids[mask], splits=self.splits[mask])


def describe_identity(provenance: dict[str, Any]) -> str:
    """A one-line name for a featurizer + layout, for error messages users can compare."""
    layout = provenance.get("layout") or {}
    shape = f"{layout.get('aggregation', '?')} x {layout.get('feature_dim', '?')} = {layout.get('length', '?')}"
    sha = provenance.get("weights_sha256")
    weights = f", weights sha256 {sha[:12]}" if sha else ""
    return f"featurizer {provenance.get('featurizer')!r} (layout {shape}{weights})"


def identity_mismatch(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The identity keys on which two provenance dicts disagree (empty when compatible)."""
    differ = [key for key in IDENTITY_KEYS if _canonical(a.get(key)) != _canonical(b.get(key))]
    sha_a, sha_b = a.get("weights_sha256"), b.get("weights_sha256")
    if sha_a and sha_b and sha_a != sha_b:
        differ.append("weights_sha256")
    return differ


def check_same_identity(expected: dict[str, Any], found: dict[str, Any], *, expected_what: str,
                        found_what: str, hint: str) -> None:
    """Raise :class:`IncompatibleArtifactsError` naming both sides when featurizer or layout differ."""
    differ = identity_mismatch(expected, found)
    if differ:
        raise IncompatibleArtifactsError(
            f"{expected_what} has {describe_identity(expected)} but {found_what} has "
            f"{describe_identity(found)} (they differ in {', '.join(differ)}); {hint}")


def runtime_differences(trained: dict[str, Any], found: dict[str, Any]) -> list[str]:
    """How the featurizer and detector backends, the face detection mode and descriptor library
    versions (provenance keys ``featurizer_backend``, ``detector_backend``, ``detection_mode`` and
    ``libraries``) differ between two provenance dicts, one line each; empty when they agree or
    (backends, libraries) when either side does not record them. A table that records no
    detection mode was made before faster modes existed: exact."""
    differ = []
    for part in ("featurizer", "detector"):
        backends = trained.get(f"{part}_backend"), found.get(f"{part}_backend")
        if None not in backends and "auto" not in backends and backends[0] != backends[1]:
            differ.append(f"{part} backend {backends[0]} -> {backends[1]}")
    modes = detection_mode_name(trained), detection_mode_name(found)
    if modes[0] != modes[1]:
        differ.append(f"face detection {modes[0]} -> {modes[1]}")
    a, b = trained.get("libraries"), found.get("libraries")
    if isinstance(a, dict) and isinstance(b, dict):
        for name in sorted(set(a) | set(b)):
            if a.get(name) != b.get(name):
                differ.append(f"{name} {a.get(name) or 'not used'} -> {b.get(name) or 'not used'}")
    return differ


def detection_mode_name(provenance: dict[str, Any]) -> str:
    """The face detection mode a provenance records (``exact``, ``every-5``, ``max-side-640``, ...)."""
    record = provenance.get("detection_mode")
    return str(record.get("mode", "exact")) if isinstance(record, dict) else "exact"


def warn_if_runtimes_differ(trained: dict[str, Any], found: dict[str, Any], *, trained_what: str,
                            found_what: str) -> list[str]:
    """Log a warning (and return the differences) when descriptors were made with other library
    versions, another backend or another face detection mode than the model's training descriptors.

    Not an error: the descriptors usually move by little (Pillow 12 and 13 differ by one grey
    level in some resized pixels; a faster detection mode keeps them within cosine 0.99 on the
    benchmark clips), but scores may then differ from those of an exact rerun.
    """
    differ = runtime_differences(trained, found)
    if differ:
        logger.warning("%s was trained on descriptors made with other versions or settings than %s: %s; predictions "
                       "may differ slightly from descriptors made like the training ones",
                       trained_what, found_what, "; ".join(differ))
    elif "libraries" not in trained or "libraries" not in found:
        logger.warning("%s or %s does not record the library versions its descriptors were made with; "
                       "cannot check that they match", trained_what, found_what)
    return differ


def parquet_files(path: str | Path) -> list[Path]:
    """One Parquet file, or the ``*.parquet`` files of a folder (e.g. extraction shards) in name order."""
    path = Path(path)
    if path.is_dir():
        # Hidden and underscore names are temporary files or sidecars of other writers.
        files = sorted(p for p in path.glob("*.parquet") if p.is_file() and p.name[0] not in "._")
        if not files:
            raise DatasetLayoutError(f"{path} holds no *.parquet files; point --features at the "
                                     "descriptor table(s) the extraction job wrote")
        return files
    if not path.exists():
        raise FileNotFoundError(f"descriptor table {path} does not exist")
    return [path]


def load_descriptors(path: str | Path) -> DescriptorSet:
    """Read every descriptor table under ``path`` into one :class:`DescriptorSet`.

    All files must come from one featurizer, layout and class list; otherwise the error names
    the first file and the one that disagrees. Rows come back ordered by clip id.
    """
    files = parquet_files(path)
    parts = [_read_table(f) for f in files]
    first_file, first_prov = files[0], parts[0][1]
    for file, (_, prov) in zip(files[1:], parts[1:]):
        check_same_identity(first_prov, prov, expected_what=str(first_file), found_what=str(file),
                            hint="train on descriptors made by a single featurizer and layout")
        if _canonical(prov.get("classes")) != _canonical(first_prov.get("classes")):
            raise IncompatibleArtifactsError(
                f"{first_file} lists classes {first_prov.get('classes')} but {file} lists "
                f"{prov.get('classes')}; combine tables of one dataset only")
    table = pa.concat_tables([t.replace_schema_metadata(None) for t, _ in parts])
    # Shard names and row order depend on how the extraction ran (Beam bundles, retries);
    # ordering by clip id makes the fitted model depend on the clips alone.
    table = table.sort_by("clip_id")
    descriptors = _to_descriptor_set(table, first_prov, tuple(str(f) for f in files))
    _check_unique_clip_ids(descriptors)
    return descriptors


def select_split(descriptors: DescriptorSet, split: str) -> DescriptorSet:
    """The rows of one split; ``all`` keeps every row."""
    if split == "all":
        return descriptors
    mask = descriptors.splits == split
    if not mask.any():
        present = sorted({str(s) for s in descriptors.splits})
        raise DatasetLayoutError(f"no clips in split {split!r} of {', '.join(descriptors.sources)}; "
                                 f"splits present: {present} (or use --split all)")
    return descriptors.take(mask)


def encode_labels(labels: np.ndarray, classes: tuple[str, ...]) -> np.ndarray:
    """Class names to indices in ``classes`` order; a name outside the list is a layout error."""
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted({str(v) for v in labels if v not in index})
    if unknown:
        raise DatasetLayoutError(f"labels {unknown} are not among the classes {list(classes)}")
    return np.array([index[v] for v in labels], dtype=np.int64)


def _read_table(file: Path) -> tuple[pa.Table, dict[str, Any]]:
    try:
        table = pq.read_table(file)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DatasetLayoutError(f"{file} is not a readable Parquet file: {exc}") from exc
    missing = [c for c in ("clip_id", "descriptor", "has_face", "status", "label", "split")
               if c not in table.column_names]
    if missing:
        raise DatasetLayoutError(f"{file} lacks the descriptor-table columns {missing}; "
                                 "expected a table written by the extraction job")
    provenance = read_provenance(table.schema)
    if not provenance:
        provenance = _provenance_from_columns(table)
        logger.warning("%s has no provenance metadata; using featurizer %r from its rows and "
                       "checking only the descriptor length", file, provenance["featurizer"])
    return table, provenance


def _provenance_from_columns(table: pa.Table) -> dict[str, Any]:
    """A minimal provenance for tables written without metadata (e.g. by pandas.to_parquet)."""
    def single(column: str) -> Any:
        if column not in table.column_names:
            return None
        values = set(table.column(column).to_pylist())
        return values.pop() if len(values) == 1 else None

    length = _descriptor_width(table)
    return {"featurizer": single("featurizer"), "dataset": single("dataset"),
            "layout": {"length": length} if length is not None else None}


def _descriptor_width(table: pa.Table) -> int | None:
    column_type = table.schema.field("descriptor").type
    if pa.types.is_fixed_size_list(column_type):
        return column_type.list_size
    lengths = set(pc.list_value_length(table.column("descriptor")).to_pylist())
    return lengths.pop() if len(lengths) == 1 else None


def _to_descriptor_set(table: pa.Table, provenance: dict[str, Any], sources: tuple[str, ...]) -> DescriptorSet:
    n = table.num_rows
    width = _descriptor_width(table) if n else (provenance.get("layout") or {}).get("length", 0)
    if width is None:
        raise DatasetLayoutError(f"descriptors of unequal length in {', '.join(sources)}")
    flat = table.column("descriptor").combine_chunks().flatten()
    if flat.null_count:
        raise DatasetLayoutError(f"null values inside descriptors in {', '.join(sources)}")
    X = flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(n, width)
    return DescriptorSet(
        X=np.ascontiguousarray(X),
        labels=np.array(table.column("label").to_pylist(), dtype=object),
        has_face=np.array(table.column("has_face").to_pylist(), dtype=bool),
        status=np.array(table.column("status").to_pylist(), dtype=object),
        clip_ids=np.array(table.column("clip_id").to_pylist(), dtype=object),
        splits=np.array(table.column("split").to_pylist(), dtype=object),
        provenance=provenance,
        sources=sources,
    )


def _check_unique_clip_ids(descriptors: DescriptorSet) -> None:
    ids, counts = np.unique(descriptors.clip_ids.astype(str), return_counts=True)
    if (counts > 1).any():
        repeated = ids[counts > 1][:5].tolist()
        raise DatasetLayoutError(f"clip ids {repeated} occur more than once in "
                                 f"{', '.join(descriptors.sources)}; a folder should hold each clip once "
                                 "(remove merged copies or stale shards)")


def _canonical(value: Any) -> str:
    """JSON text with sorted keys, so tuples/lists and key order do not count as differences."""
    return json.dumps(value, sort_keys=True)
