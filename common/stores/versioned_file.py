"""One small file that is only ever changed on a condition: created if absent, replaced if unchanged.

A compare-and-swap on a file, the primitive a lock needs: a writer reads a :class:`Version`
(content and a token), and ``replace(version, data)`` succeeds only if no one else wrote the
file since; otherwise it raises :class:`VersionConflict` and the writer reads again. When many
writers replace the same version at the same instant, exactly one succeeds.

- S3 (and S3-compatible stores): the token is the ETag, the writes are conditional PUTs
  (``If-None-Match: *`` to create, ``If-Match: <etag>`` to replace), atomic on the server.
- GCS: the token is the object's generation, the writes are uploads with
  ``ifGenerationMatch`` (0 to create), atomic on the server.
- Local disk (and network file systems with atomic ``link`` and ``rename``): the token is a
  hash of the content. Replacing version V first claims V by hard-linking the new content as
  ``.<name>.claims/<V's token>``, which fails if the name exists, so only one writer ever
  replaces V; that writer then renames the new content over the file. While a claim waits for
  its rename the version read is the claimed one, marked ``pending``: its writer has not
  finished, and replacing it is only safe once that writer is known to be dead.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from common.stores import storage

CLAIMS_KEPT_S = 3600.0
"""Local claims older than this are deleted: a writer that read a version an hour ago and only
now replaces it would be refused by a kept claim, not by a deleted one."""


class VersionConflict(RuntimeError):
    """The file is no longer the version the write was conditioned on (or no longer absent)."""


@dataclass(frozen=True)
class Version:
    """The file's content when read, and what a conditional write names it by."""

    data: bytes
    token: str
    pending: bool = False
    """Local disk only: a writer claimed the previous version and has not yet put this one in place."""


class VersionedFile(Protocol):
    url: str

    def read(self) -> Version | None:
        """The current version, or None when the file does not exist."""

    def create(self, data: bytes) -> Version:
        """Write ``data`` if the file does not exist; raises VersionConflict if it does."""

    def replace(self, expected: Version, data: bytes) -> Version:
        """Write ``data`` if the file is still ``expected``; raises VersionConflict if not."""


def versioned_file(url: str) -> VersionedFile:
    """The conditional-write file at ``url``: a path, ``file://``, ``s3://`` or ``gs://``."""
    if not storage.is_remote(url):
        return LocalVersionedFile(Path(url.removeprefix("file://")))
    scheme = url.split("://", 1)[0]
    if scheme in ("s3", "s3a"):
        return S3VersionedFile(url)
    if scheme in ("gs", "gcs"):
        return GcsVersionedFile(url)
    raise ValueError(f"{url}: conditional writes are supported on a local disk, s3:// and gs://, not {scheme}://")


def _content_token(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


class LocalVersionedFile:
    """Compare-and-swap with ``link`` (fails if the name exists) and ``rename`` (atomic replace)."""

    MAX_CHAIN = 64

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = str(path)
        self.claims = path.with_name(f".{path.name}.claims")

    def read(self) -> Version | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        pending = False
        for _ in range(self.MAX_CHAIN):  # a claimed version is already replaced, or about to be
            try:
                data = (self.claims / _content_token(data)).read_bytes()
            except FileNotFoundError:
                break
            pending = True
        return Version(data, _content_token(data), pending)

    def create(self, data: bytes) -> Version:
        staged = self._stage(data)
        try:
            os.link(staged, self.path)
        except FileExistsError:
            raise VersionConflict(f"{self.path} exists") from None
        finally:
            staged.unlink()
        return Version(data, _content_token(data))

    def replace(self, expected: Version, data: bytes) -> Version:
        staged = self._stage(data)
        try:
            os.link(staged, self.claims / expected.token)
        except FileExistsError:
            staged.unlink()
            raise VersionConflict(f"{self.path} was changed since it was read") from None
        os.replace(staged, self.path)
        self._prune()
        return Version(data, _content_token(data))

    def _stage(self, data: bytes) -> Path:
        """The content written in full beside the file (same file system), ready to link or rename."""
        self.claims.mkdir(parents=True, exist_ok=True)
        staged = self.claims / f"tmp-{uuid.uuid4().hex}"
        staged.write_bytes(data)
        return staged

    def _prune(self) -> None:
        cutoff = time.time() - CLAIMS_KEPT_S
        for entry in os.scandir(self.claims):
            try:
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
            except FileNotFoundError:  # pruned by another run at the same time
                pass


class _BucketObject:
    """One object of a bucket: its filesystem, bucket and key; ``create`` and ``replace`` are one
    conditional write (``token`` None: only if absent)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.fs, path = storage.filesystem(url)
        self.bucket, _, self.key = path.partition("/")

    def create(self, data: bytes) -> Version:
        return self._write(data, None)

    def replace(self, expected: Version, data: bytes) -> Version:
        return self._write(data, expected.token)

    def _write(self, data: bytes, token: str | None) -> Version:
        raise NotImplementedError


class S3VersionedFile(_BucketObject):
    """Conditional PUTs through s3fs's client (its credentials and ``AWS_ENDPOINT_URL``)."""

    def read(self) -> Version | None:
        from fsspec.asyn import sync

        try:
            data, etag = sync(self.fs.loop, self._get)
        except FileNotFoundError:
            return None
        return Version(data, etag)

    def _write(self, data: bytes, token: str | None) -> Version:
        from fsspec.asyn import sync

        condition = {"IfNoneMatch": "*"} if token is None else {"IfMatch": token}
        return Version(data, sync(self.fs.loop, self._conditional_put, data, condition))

    async def _client(self) -> Any:
        await self.fs.set_session()
        return await self.fs.get_s3(self.bucket)

    async def _get(self) -> tuple[bytes, str]:
        from botocore.exceptions import ClientError

        client = await self._client()
        try:
            response = await client.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            if _s3_status(exc) == 404:
                raise FileNotFoundError(self.url) from None
            raise OSError(f"{self.url}: {exc}") from exc
        async with response["Body"] as body:
            return await body.read(), response["ETag"]

    async def _conditional_put(self, data: bytes, condition: dict[str, str]) -> str:
        from botocore.exceptions import ClientError

        client = await self._client()
        try:
            response = await client.put_object(Bucket=self.bucket, Key=self.key, Body=data, **condition)
        except ClientError as exc:
            # 412: the condition did not hold; 409: a concurrent conditional write won; 404: gone
            if _s3_status(exc) in (404, 409, 412):
                raise VersionConflict(f"{self.url}: {exc}") from None
            raise OSError(f"{self.url}: {exc}") from exc
        return str(response["ETag"])


def _s3_status(exc: Any) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


class GcsVersionedFile(_BucketObject):
    """Uploads with ``ifGenerationMatch`` through gcsfs's session (``STORAGE_EMULATOR_HOST`` honoured)."""

    def read(self) -> Version | None:
        try:
            headers, data = self.fs.call("GET", "b/{}/o/{}", self.bucket, self.key, alt="media")
        except FileNotFoundError:
            return None
        return Version(bytes(data), str(headers["x-goog-generation"]))

    def _write(self, data: bytes, token: str | None) -> Version:
        """A multipart upload (the JSON API's one-request form) conditioned on the generation
        (``0``: only if absent)."""
        generation = "0" if token is None else token
        boundary = uuid.uuid4().hex
        body = b"".join([
            f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".encode(),
            json.dumps({"name": self.key}).encode(),
            f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n".encode(),
            data,
            f"\r\n--{boundary}--\r\n".encode(),
        ])
        location = f"{self.fs._location}/upload/storage/v1/b/{self.bucket}/o"
        try:
            written = self.fs.call("POST", location, uploadType="multipart", ifGenerationMatch=generation,
                                   headers={"Content-Type": f'multipart/related; boundary="{boundary}"'},
                                   data=body, json_out=True)
        except FileExistsError:  # gcsfs's name for 412 Precondition Failed
            raise VersionConflict(f"{self.url}: generation {generation} is not the current one") from None
        return Version(data, str(written["generation"]))
