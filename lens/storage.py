"""Where snapshots and finished recordings are kept: one storage for every host.

* ``folder`` (the default): files under LENS_STORAGE_PATH (the instance folder when unset).
  Several hosts share it by mounting one folder (NFS, a cluster file system) there.
* ``s3``: an S3-compatible object store (AWS S3, MinIO, Ceph…) through boto3: the bucket
  LENS_S3_BUCKET at LENS_S3_ENDPOINT_URL; credentials the AWS way (AWS_ACCESS_KEY_ID /
  AWS_SECRET_ACCESS_KEY or an instance role). The browser fetches a recording through a
  short-lived signed URL; snapshots pass through the web process.

Keys are relative paths such as ``captures/12/9c1d….png`` and ``recordings/12/….webm``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

SIGNED_URL_SECONDS = 300


class StorageError(Exception):
    """The storage could not keep or give back a file."""


class Storage(Protocol):
    kind: str

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...
    def put_file(self, key: str, path: Path, content_type: str) -> None: ...
    def get_bytes(self, key: str) -> bytes: ...
    def local_path(self, key: str) -> Path | None: ...
    def signed_url(self, key: str, filename: str) -> str | None: ...


def safe_key(key: str) -> str:
    """A relative key without `..` or a leading slash (no way out of the storage)."""
    parts = [p for p in key.replace("\\", "/").split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise StorageError(f"not a storage key: {key!r}")
    return "/".join(parts)


class FolderStorage:
    """Files under one folder (local, or a mount every host shares)."""

    kind = "folder"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def local_path(self, key: str) -> Path:
        base = self.root.resolve()
        path = (base / safe_key(key)).resolve()
        if not path.is_relative_to(base) or path == base:
            raise StorageError(f"{key!r} is outside {self.root}")
        return path

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        path = self.local_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")
        partial.write_bytes(data)
        os.replace(partial, path)  # a reader never sees half a file

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        target = self.local_path(key)
        if Path(path).resolve() == target:
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), target)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.local_path(key).read_bytes()
        except FileNotFoundError as exc:
            raise StorageError(f"{key} is not in the storage") from exc

    def signed_url(self, key: str, filename: str) -> str | None:
        return None  # served by the web process from the folder


class S3Storage:
    """An S3-compatible bucket through boto3."""

    kind = "s3"

    def __init__(self, bucket: str, endpoint_url: str = "", region: str = "", **client: Any):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self._client = boto3.client(
            "s3",
            endpoint_url=endpoint_url or None,
            region_name=region or None,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}),
            **client,
        )

    def _call(self, method: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._client, method)(Bucket=self.bucket, **kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"object store: {exc}") from exc

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self._call("put_object", Key=safe_key(key), Body=data, ContentType=content_type)

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.upload_file(
                str(path), self.bucket, safe_key(key), ExtraArgs={"ContentType": content_type}
            )
        except (BotoCoreError, ClientError, OSError) as exc:
            raise StorageError(f"object store: {exc}") from exc

    def get_bytes(self, key: str) -> bytes:
        return self._call("get_object", Key=safe_key(key))["Body"].read()

    def local_path(self, key: str) -> None:
        return None

    def signed_url(self, key: str, filename: str) -> str:
        return self._client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": safe_key(key),
                "ResponseContentDisposition": f'inline; filename="{filename}"',
            },
            ExpiresIn=SIGNED_URL_SECONDS,
        )


def storage_from_env(env: Mapping[str, str], default_root: Path) -> Storage:
    """The storage the settings name (the web process and the sidecar read the same ones)."""
    kind = env.get("LENS_STORAGE", "folder")
    if kind == "folder":
        return FolderStorage(Path(env.get("LENS_STORAGE_PATH") or default_root))
    if kind == "s3":
        bucket = env.get("LENS_S3_BUCKET", "")
        if not bucket:
            raise StorageError("LENS_STORAGE=s3 needs LENS_S3_BUCKET")
        return S3Storage(bucket, env.get("LENS_S3_ENDPOINT_URL", ""), env.get("LENS_S3_REGION", ""))
    raise StorageError(f"LENS_STORAGE must be folder or s3, not {kind!r}")
