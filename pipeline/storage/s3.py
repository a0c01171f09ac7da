"""S3-compatible object storage (AWS S3, SeaweedFS, MinIO, ...): workers on any host reach it.

Uploads stream through a hashing reader into boto3's managed transfer: parts of
:data:`PART_BYTES` go up as a multipart upload, at most :data:`PARTS_IN_MEMORY` parts are held
at once, so memory stays bounded whatever the file's size, and the SHA-256 is computed in the
same single pass (the reader is deliberately not seekable, so the transfer reads it in order).
A failed upload is aborted by the transfer manager; a finished one is checked by size.

Downloads go to a private temporary directory under ``<TELEAI_STORAGE_DIR>/.tmp`` that is
removed when the ``with`` block ends. Errors are translated here, once: an unreachable endpoint
or a server-side failure is :class:`StorageUnavailable` (transient, retried); a missing bucket,
rejected credentials or a refused request is :class:`StorageMisconfigured` (permanent); a
missing object is :class:`StoredFileMissing`. Messages name the endpoint, bucket and file,
never a credential.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast
from urllib.parse import urlsplit

import boto3
import botocore.exceptions as boto_errors
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from pipeline.audio.formats import ensure_audio_format
from pipeline.audio.sniff import open_regular_file
from pipeline.audio.validate import upload_error
from pipeline.errors import (
    PermanentError,
    PipelineError,
    StorageError,
    StorageMisconfigured,
    StorageUnavailable,
    StoredFileMissing,
)
from pipeline.storage.base import StoredObject

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from pipeline.settings import Settings

SCHEME = "s3://"
PART_BYTES = 8 * 1024 * 1024
PARTS_IN_MEMORY = 4
CONCURRENCY = 4

_NO_BUCKET = frozenset({"NoSuchBucket"})
_BAD_CREDENTIALS = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
     "AuthorizationHeaderMalformed", "InvalidSecurity"}
)  # fmt: skip
_RETRYABLE = frozenset(
    {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "Throttling",
     "ThrottlingException", "RequestTimeTooSkewed"}
)  # fmt: skip
_UNREACHABLE = (
    boto_errors.EndpointConnectionError,
    boto_errors.ConnectTimeoutError,
    boto_errors.ReadTimeoutError,
    boto_errors.ConnectionClosedError,
    boto_errors.ConnectionError,
)


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → ``("bucket", "some/prefix")`` (prefix may be empty)."""
    if not url.startswith(SCHEME):
        raise StorageMisconfigured(f"'{url}' is not an s3:// reference")
    bucket, _, prefix = url[len(SCHEME) :].partition("/")
    if not bucket:
        raise StorageMisconfigured(f"'{url}' names no bucket")
    return bucket, prefix.strip("/")


def shown_endpoint(endpoint_url: str | None) -> str:
    """The endpoint for messages: scheme, host, port and path only (no user info, no query)."""
    if not endpoint_url:
        return "AWS S3"
    parts = urlsplit(endpoint_url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}".rstrip("/")


def make_client(settings: Settings) -> S3Client:
    """A client for the configured endpoint. Path-style addressing for custom endpoints
    (SeaweedFS and MinIO serve buckets under the path, not as sub-domains)."""

    def secret(value: Any) -> str | None:
        return value.get_secret_value() if value is not None else None

    config = Config(
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
        s3={"addressing_style": "path"} if settings.s3_endpoint_url else {},
    )
    # One boto3 Session per client: the default session is not safe to share across threads.
    client: S3Client = boto3.session.Session().client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=secret(settings.s3_access_key_id),
        aws_secret_access_key=secret(settings.s3_secret_access_key),
        config=config,
    )
    return client


def transfer_config() -> TransferConfig:
    """Multipart transfers with bounded memory: PARTS_IN_MEMORY × PART_BYTES at most."""
    config = TransferConfig(
        multipart_threshold=PART_BYTES,
        multipart_chunksize=PART_BYTES,
        max_concurrency=CONCURRENCY,
        use_threads=True,
    )
    # s3transfer's own knob (TransferConfig's constructor does not expose it): how many
    # parts of a non-seekable stream may be read ahead of the uploads.
    config.max_in_memory_upload_chunks = PARTS_IN_MEMORY
    return config


class HashingReader(io.RawIOBase):
    """Reads a stream once, in order, feeding a SHA-256 and a byte count as it goes."""

    def __init__(self, source: IO[bytes]) -> None:
        super().__init__()
        self._source = source
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False  # keeps the transfer manager reading in order, so the hash is right

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        chunk = self._source.read(len(view))  # any binary stream, not only real files
        count = len(chunk)
        view[:count] = chunk
        self.digest.update(chunk)
        self.size += count
        return count


class S3Storage:
    """Managed storage in one bucket under one key prefix; see the module docstring."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        client: S3Client,
        temp_root: Path,
        *,
        endpoint: str = "AWS S3",
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.temp_root = Path(temp_root)
        self.endpoint = endpoint
        self.transfer = transfer_config()

    @classmethod
    def from_settings(cls, settings: Settings, temp_root: Path) -> S3Storage:
        assert settings.storage_url is not None, "S3 storage needs TELEAI_STORAGE_URL"
        bucket, prefix = parse_url(settings.storage_url)
        return cls(
            bucket,
            prefix,
            make_client(settings),
            temp_root,
            endpoint=shown_endpoint(settings.s3_endpoint_url),
        )

    def __repr__(self) -> str:
        return f"S3Storage({self.endpoint!r}, s3://{self.bucket}/{self.prefix})"

    # -- references --

    def ref_for(self, key: str) -> str:
        return f"{SCHEME}{self.bucket}/{key}"

    def new_key(self, fmt: str) -> str:
        now = datetime.now(UTC)
        name = f"{now:%Y}/{now:%m}/{uuid.uuid4().hex}.{fmt}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def owns(self, ref: str) -> bool:
        return ref.startswith(SCHEME)

    def locate(self, ref: str) -> str:
        """The key of ``ref``, which must be in this bucket under this prefix."""
        bucket, key = parse_url(ref)
        parts = PurePosixPath(key).parts
        inside = bucket == self.bucket and (not self.prefix or key.startswith(self.prefix + "/"))
        if not inside or not parts or ".." in parts or "." in parts:
            raise StorageMisconfigured(
                f"the stored file {PurePosixPath(key).name or ref} is outside managed storage "
                f"(s3://{self.bucket}/{self.prefix})"
            )
        return key

    def check(self, ref: str) -> None:
        self.locate(ref)

    # -- operations --

    def persist(self, refs: Sequence[str]) -> None:
        """Nothing to do: an object is durable once its upload returned (``durable`` is moot)."""

    def put(self, src: Path | IO[bytes], fmt: str, *, durable: bool = True) -> StoredObject:
        fmt = ensure_audio_format(fmt)
        key = self.new_key(fmt)
        shown = Path(src).name if isinstance(src, Path) else "the upload"
        source: contextlib.AbstractContextManager[IO[bytes]]
        if isinstance(src, Path):
            try:
                source = open_regular_file(src, follow_symlinks=False)
            except OSError as err:
                raise upload_error(err, src.name) from err
        else:
            source = contextlib.nullcontext(src)  # the caller's stream: read, never closed
        with source as stream:
            reader = HashingReader(stream)
            try:
                self.client.upload_fileobj(
                    cast(BinaryIO, reader),  # an io.RawIOBase; the stubs want IO[Any]
                    self.bucket,
                    key,
                    Config=self.transfer,
                )
            except (boto_errors.BotoCoreError, boto_errors.ClientError) as err:
                raise self._error(err, "store", key) from err
            except OSError as err:  # reading the source failed mid-way; the upload was aborted
                raise upload_error(err, shown) from err
        stored = self.size(self.ref_for(key))
        if stored != reader.size:
            with contextlib.suppress(PipelineError):
                self.delete(self.ref_for(key))
            raise StorageError(f"{self.endpoint} kept {stored} bytes of {shown}, not {reader.size}")
        return StoredObject(ref=self.ref_for(key), sha256=reader.digest.hexdigest(), size=stored)

    @contextlib.contextmanager
    def open_local(self, ref: str) -> Iterator[Path]:
        key = self.locate(ref)
        self.temp_root.mkdir(parents=True, exist_ok=True)
        directory = Path(tempfile.mkdtemp(prefix="fetch-", dir=self.temp_root))
        try:
            path = directory / PurePosixPath(key).name
            try:
                with path.open("wb") as out:
                    self.client.download_fileobj(self.bucket, key, out, Config=self.transfer)
            except (boto_errors.BotoCoreError, boto_errors.ClientError) as err:
                raise self._error(err, "fetch", key) from err
            yield path
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def size(self, ref: str) -> int | None:
        key = self.locate(ref)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except (boto_errors.BotoCoreError, boto_errors.ClientError) as err:
            error = self._error(err, "look up", key)
            if isinstance(error, StoredFileMissing):
                return None
            raise error from err
        return int(head["ContentLength"])

    def delete(self, ref: str) -> bool:
        key = self.locate(ref)
        existed = self.size(ref) is not None
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (boto_errors.BotoCoreError, boto_errors.ClientError) as err:
            raise self._error(err, "delete", key) from err
        return existed

    # -- errors --

    def _bucket_missing(self) -> bool:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except boto_errors.ClientError as err:
            return _status(err) == 404 or _code(err) in _NO_BUCKET
        except boto_errors.BotoCoreError:
            return False
        return False

    def _error(self, err: Exception, action: str, key: str) -> PipelineError:
        """Our error for a boto error met while doing ``action`` to ``key`` (see module doc)."""
        name = PurePosixPath(key).name
        where = f"object storage at {self.endpoint}"
        missing_bucket = StorageMisconfigured(
            f"bucket '{self.bucket}' does not exist at {self.endpoint} "
            "(check TELEAI_STORAGE_URL, or create the bucket)"
        )
        if isinstance(err, boto_errors.ClientError):
            code, status = _code(err), _status(err)
            if code in _NO_BUCKET:
                return missing_bucket
            if code in _BAD_CREDENTIALS:
                return StorageMisconfigured(
                    f"{where} rejected the credentials ({code}): check "
                    "TELEAI_S3_ACCESS_KEY_ID and TELEAI_S3_SECRET_ACCESS_KEY"
                )
            if status == 403 or code in {"AccessDenied", "403", "Forbidden"}:
                if self._bucket_missing():
                    return missing_bucket
                return StorageMisconfigured(
                    f"{where} refused to {action} {name} in bucket '{self.bucket}' (HTTP 403): "
                    "the credentials (TELEAI_S3_ACCESS_KEY_ID, TELEAI_S3_SECRET_ACCESS_KEY) are "
                    "wrong or lack permission"
                )
            if status == 404 or code in {"NoSuchKey", "404", "NotFound"}:
                if self._bucket_missing():
                    return missing_bucket
                return StoredFileMissing(
                    f"the stored copy {name} is missing from bucket '{self.bucket}'"
                )
            if status >= 500 or status in (408, 429) or code in _RETRYABLE:
                return StorageUnavailable(
                    f"{where} failed to {action} {name} ({code or status}); will retry"
                )
            return StorageMisconfigured(f"{where} refused to {action} {name}: {code} ({status})")
        if isinstance(err, boto_errors.NoCredentialsError | boto_errors.PartialCredentialsError):
            return StorageMisconfigured(
                "no S3 credentials: set TELEAI_S3_ACCESS_KEY_ID and TELEAI_S3_SECRET_ACCESS_KEY"
            )
        if isinstance(err, _UNREACHABLE):
            return StorageUnavailable(
                f"{where} is unreachable ({type(err).__name__}) while trying to {action} "
                f"{name}; will retry"
            )
        if isinstance(err, boto_errors.ParamValidationError):
            return PermanentError(f"bad request to {where}: {type(err).__name__}")
        return StorageUnavailable(f"{where} failed to {action} {name} ({type(err).__name__})")


def _code(err: boto_errors.ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _status(err: boto_errors.ClientError) -> int:
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
