"""The artifact store in S3-compatible object storage: `Store("s3://bucket/prefix")`.

Workers on many machines share one bucket; each keeps a local read cache, so stages, run folders (their links
point into the cache), `gc` and `verify` work on local paths exactly as with a local store (translora/store.py).

Layout under the prefix:
    <stage>/<key>/complete.json          the marker: an output exists iff its marker exists
    <stage>/<key>/<upload>/<files>       the files of one writer's upload (manifest.json among them)
    locks/<key>                          the lease of the key's writer
    damaged/<stage>/<key>-<time>/...     an entry set aside (its marker and files), kept as evidence

Publish: a writer computes into a local temporary folder, uploads its files under a fresh `<upload>` id, then
writes the marker (upload id, file list, content hash) with a create-only PutObject (`If-None-Match: *`). Readers
find files only through a marker, so a writer killed mid-upload leaves nothing visible (the next writer of the key
deletes its leftovers), and of two writers of one key exactly one publishes.

Lease: one computation per key across machines. `locks/<key>` is created with `If-None-Match: *`; it holds the
owner's id and the lease's length, and a heartbeat thread rewrites it (`If-Match` its ETag) every third of that
length. It expires when it has not been rewritten for a whole length, measured on the server's clock (the `Date`
of a read against the object's `Last-Modified`), so machines' clock skew does not matter. A waiter that finds it
expired (its holder crashed) deletes it with `If-Match` the ETag it read, so two waiters cannot both take it over,
and creates its own. A holder whose rewrite fails has lost the lease (it stalled for a whole length) and does not
publish.

Cache: `path(stage, key)` is `<cache>/<stage>/<key>`. `problem` downloads a published output there the first time,
into a temporary folder that is renamed into place only when its files hash to the marker's content hash; a cached
copy that no longer does (edited, half-deleted) is downloaded again. The cache lives under
$TRANSLORA_HOME/s3-cache/<bucket>/<prefix> unless the store is given `cache=`.

Settings: the endpoint, credentials and region come from the standard AWS variables and files (AWS_ENDPOINT_URL
or AWS_ENDPOINT_URL_S3 names a non-AWS service), or from the URL's query / keyword arguments:
`s3://bucket/prefix?endpoint_url=http://host:9000&lease_seconds=60&cache=/path`.

Why boto3: both protocols rest on conditional requests and what they return: PutObject with IfNoneMatch / IfMatch,
DeleteObject with IfMatch, the ETag, Last-Modified and Date of a read, and the 412 / 409 codes of a lost race.
boto3 exposes each as a plain parameter or field, reads the standard AWS configuration (endpoint included), and
brings retries and multipart transfers (s3transfer); it is AWS's maintained SDK that S3-compatible services test
against. fsspec/s3fs shows files rather than objects (it has exclusive create, but the lease needs the ETag of the
object it read and a delete conditional on it), and obstore would add a second API for the same few calls.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qsl, urlsplit

from translora.artifacts import hash_path, read_manifest
from translora.errors import ArtifactError, TransientError
from translora.store import RESERVED, Store

log = logging.getLogger(__name__)

MARKER = "complete.json"
LEASE_SECONDS = 60.0  # a crashed holder blocks its key this long; the heartbeat rewrites it every third of it
LOST_RACE = ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "404")  # another writer acted first


class LeaseLostError(TransientError):
    """The writer stalled past its lease and another one may be computing the key: retrying finds its output."""


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


class Lease:
    """A lock on one key across machines that survives a crashed holder (see the module docstring)."""

    def __init__(self, client: Any, bucket: str, name: str, seconds: float):
        self.client, self.bucket, self.name, self.seconds = client, bucket, name, seconds
        self.owner = uuid.uuid4().hex  # one per acquisition, so a taken-over lease never has our ETag
        self.etag = ""
        self.lost = False
        self._beats = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> bytes:  # the beat count makes every rewrite's ETag new
        return json.dumps(
            {
                "owner": self.owner,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "seconds": self.seconds,
                "beat": self._beats,
            }
        ).encode()

    def acquire(self) -> None:
        from botocore.exceptions import ClientError

        waited = False
        while True:
            try:
                self.etag = self.client.put_object(
                    Bucket=self.bucket, Key=self.name, Body=self._body(), IfNoneMatch="*"
                )["ETag"]
                break
            except ClientError as exc:
                if _code(exc) not in LOST_RACE:
                    raise
            held = self._read()
            if held is None:
                continue  # released between our write and our read
            holder, etag, age = held
            if not waited:
                log.info(
                    "waiting for the lease %s, held by %s (host %s, pid %s)",
                    self.name,
                    holder.get("owner"),
                    holder.get("host"),
                    holder.get("pid"),
                )
                waited = True
            if age > float(holder.get("seconds", self.seconds)):
                log.warning(
                    "lease %s of %s (host %s, pid %s) was not renewed for %.0f s: taking it over",
                    self.name,
                    holder.get("owner"),
                    holder.get("host"),
                    holder.get("pid"),
                    age,
                )
                try:  # only the lease we judged: if its holder renewed it meanwhile, this fails and we wait on
                    self.client.delete_object(Bucket=self.bucket, Key=self.name, IfMatch=etag)
                except ClientError as exc:
                    if _code(exc) not in LOST_RACE:
                        raise
                continue
            time.sleep(min(1.0, self.seconds / 4))
        self._thread = threading.Thread(target=self._heartbeat, name=f"lease {self.name}", daemon=True)
        self._thread.start()

    def _read(self) -> tuple[dict, str, float] | None:
        """(holder, ETag, seconds since it was last written by the server's clock), or None if there is none."""
        from botocore.exceptions import ClientError

        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self.name)
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return None
            raise
        try:
            holder = json.loads(got["Body"].read())
        except ValueError:
            holder = {}  # not ours: it still expires
        now = parsedate_to_datetime(got["ResponseMetadata"]["HTTPHeaders"]["date"])
        return holder, got["ETag"], (now - got["LastModified"]).total_seconds()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            self._beats += 1
            try:
                self.etag = self.client.put_object(
                    Bucket=self.bucket, Key=self.name, Body=self._body(), IfMatch=self.etag
                )["ETag"]
            except Exception as exc:
                if _code(exc) in LOST_RACE:  # taken over: we stalled past the lease
                    self.lost = True
                    log.error("lost the lease %s: another writer may be computing it", self.name)
                    return
                # a network error: the next beat may get through before the lease expires
                log.warning("could not renew the lease %s (%s); trying again", self.name, exc)

    def release(self) -> None:
        from botocore.exceptions import ClientError

        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.lost:
            return
        try:  # ours only: a lease taken over from us is the new holder's
            self.client.delete_object(Bucket=self.bucket, Key=self.name, IfMatch=self.etag)
        except ClientError as exc:
            if _code(exc) not in LOST_RACE:
                raise


class S3Store(Store):
    def __init__(
        self,
        root: str | None = None,
        cache: Path | str | None = None,
        endpoint_url: str | None = None,
        lease_seconds: float | None = None,
    ):
        from translora.models import translora_home
        from translora.store import default_root

        url = urlsplit(str(root or default_root()))
        query = dict(parse_qsl(url.query))
        self.bucket, self.prefix = url.netloc, url.path.strip("/")
        self.endpoint_url = endpoint_url or query.get("endpoint_url")  # None: boto3 reads AWS_ENDPOINT_URL etc.
        self.lease_seconds = float(lease_seconds or query.get("lease_seconds") or LEASE_SECONDS)
        super().__init__(cache or query.get("cache") or translora_home() / "s3-cache" / self.bucket / self.prefix)
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self._leases: dict[str, Lease] = {}

    @cached_property
    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint_url, config=Config(retries={"mode": "standard"}))

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    # -------------------------------------------------------------- reading

    def has(self, stage: str, key: str) -> bool:
        return self._marker(stage, key) is not None

    def exists(self, stage: str, key: str) -> bool:
        return self.has(stage, key)  # an upload without a marker is a killed writer's leftover, not an entry

    def _marker(self, stage: str, key: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return json.loads(
                self.client.get_object(Bucket=self.bucket, Key=self._key(stage, key, MARKER))["Body"].read()
            )
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return None
            raise

    def problem(self, stage: str, key: str) -> str | None:
        """None when the cache holds an intact copy of the published output, downloading it first if needed;
        otherwise what is wrong with the published one."""
        marker = self._marker(stage, key)
        if marker is None:
            return f"it is not published in {self.url}"
        if self._cached_problem(stage, key, marker) is None:
            return None
        with self._local_lock(f"fetch-{key}"):  # one download per machine
            cached = self._cached_problem(stage, key, marker)  # another process may have fetched it meanwhile
            if cached is None:
                return None
            if self.path(stage, key).exists():
                log.warning(
                    "cached copy %s is damaged (%s): downloading it again from %s",
                    self.path(stage, key),
                    cached,
                    self.url,
                )
            return self._download(stage, key, marker)

    def _cached_problem(self, stage: str, key: str, marker: dict) -> str | None:
        problem = super().problem(stage, key)  # the files against the cached manifest
        if problem is None and read_manifest(self.path(stage, key)).content_hash != marker["content_hash"]:
            problem = "its manifest is not the published one"
        return problem

    def _download(self, stage: str, key: str, marker: dict) -> str | None:
        from botocore.exceptions import ClientError

        tmp = self._temporary(f"fetch-{key}")
        try:
            for name in marker["files"]:
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                try:
                    self.client.download_file(
                        self.bucket, self._key(stage, key, marker["upload"], name), str(tmp / name)
                    )
                except ClientError as exc:
                    return f"its published file {name} cannot be read ({_code(exc) or exc})"
            actual = hash_path(tmp)
            if actual != marker["content_hash"] or read_manifest(tmp).content_hash != marker["content_hash"]:
                return f"its published files hash to {actual[:12]}, its marker records {marker['content_hash'][:12]}"
            self._install(stage, key, tmp)
            return None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _install(self, stage: str, key: str, folder: Path) -> None:
        """Rename `folder` into the cache, replacing a stale copy. Call under `_local_lock(f"fetch-{key}")`."""
        final = self.path(stage, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            old = self._temporary(f"fetch-{key}.old")
            os.replace(final, old / "entry")
            shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, final)

    def ensure_local(self, path: Path | None) -> None:
        """An input that is one of this store's outputs (a run folder's link into the cache) is downloaded into
        the cache if it is missing or damaged here."""
        if path is None:
            return
        real = Path(path).resolve()  # a dangling link (made on another machine) resolves too
        stage, key = real.parent.name, real.name
        if real.parent.parent != self.root or stage in RESERVED or not self.has(stage, key):
            return  # not one of ours: key_material checks it as it is
        problem = self.problem(stage, key)
        if problem is not None:
            raise ArtifactError(
                f"input {path} is the output {self.url}/{stage}/{key}, and {problem}; run "
                f"`translora store verify --repair --store {self.url}`, then the command that made it"
            )

    # -------------------------------------------------------------- writing

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        with self._local_lock(key):  # this machine's processes wait here, and gc sees a live writer
            lease = Lease(self.client, self.bucket, self._key("locks", key), self.lease_seconds)
            lease.acquire()
            self._leases[key] = lease
            try:
                yield
            finally:
                del self._leases[key]
                lease.release()

    @contextmanager
    def writing(self, stage: str, key: str) -> Iterator[Path]:
        """Yield a temporary folder; when the block succeeds, publish it and put it in the cache. Call under
        `lock(key)`, with no published output under the key."""
        self._delete(self._key(stage, key) + "/")  # a killed writer's upload: never visible, removed now
        tmp = self._temporary(key)
        try:
            yield tmp
            if self._publish(stage, key, tmp):
                with self._local_lock(f"fetch-{key}"):
                    self._install(stage, key, tmp)
            elif (problem := self.problem(stage, key)) is not None:  # another writer's, published first
                raise ArtifactError(f"{self.url}/{stage}/{key} was published by another writer, and {problem}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(self.work_dir(key), ignore_errors=True)

    def _publish(self, stage: str, key: str, folder: Path) -> bool:
        """Upload the folder's files, then create the marker; False if another writer's marker was there first."""
        from botocore.exceptions import ClientError

        upload = uuid.uuid4().hex
        files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        for name in files:
            self._put_file(folder / name, self._key(stage, key, upload, name))
        lease = self._leases.get(key)
        if lease is not None and lease.lost:  # its new holder may be deleting leftovers under the key right now
            self._delete(self._key(stage, key, upload) + "/")
            raise LeaseLostError(
                f"lost the lease on {stage}/{key} while computing it (stalled for "
                f"{lease.seconds:.0f} s); another writer is computing it"
            )
        marker = {
            "upload": upload,
            "files": files,
            "content_hash": read_manifest(folder).content_hash,
            "host": socket.gethostname(),
            "published_at": time.time(),
        }
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self._key(stage, key, MARKER), Body=json.dumps(marker).encode(), IfNoneMatch="*"
            )
        except ClientError as exc:
            if _code(exc) not in LOST_RACE:
                raise
            self._delete(self._key(stage, key, upload) + "/")
            return False
        return True

    def _put_file(self, file: Path, name: str) -> None:
        self.client.upload_file(str(file), self.bucket, name)  # multipart for large files

    def _delete(self, prefix: str) -> None:
        """Delete every object under `prefix`."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objects:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})

    def set_aside(self, stage: str, key: str) -> str:
        """Copy the published entry to `damaged/<stage>/<key>-<time>/` (kept as evidence) and delete its marker,
        so the key is free to be computed again; the cached copy is dropped. Call under `lock(key)`."""
        aside = self._key("damaged", stage, f"{key}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}")
        marker = self._marker(stage, key)
        if marker is not None:
            for name in [MARKER, *(f"{marker['upload']}/{f}" for f in marker["files"])]:
                source = {"Bucket": self.bucket, "Key": self._key(stage, key, name)}
                try:
                    self.client.copy(source, self.bucket, f"{aside}/{name}")
                except Exception as exc:  # a missing file is part of the damage; the rest is still evidence
                    log.warning("could not keep %s as evidence: %s", source["Key"], exc)
            self.client.delete_object(Bucket=self.bucket, Key=self._key(stage, key, MARKER))
        with self._local_lock(f"fetch-{key}"):
            shutil.rmtree(self.path(stage, key), ignore_errors=True)
        return f"s3://{self.bucket}/{aside}"
