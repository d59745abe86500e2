"""Where copies go, by URL. Each target stores a file under a key and confirms it holds exactly
those bytes before ``put`` returns; anything less raises ``DeliveryError`` (the row stays queued).

- ``file:///path`` (a local disk, an NFS or SMB mount): written to ``<key>.part``, fsync'd, renamed
  over ``<key>``, the directory fsync'd, then read back and its SHA-256 compared.
- ``s3://bucket/prefix`` (boto3: AWS, MinIO, Ceph; endpoint, region and credentials the standard
  AWS way: AWS_ENDPOINT_URL, AWS_PROFILE, instance roles): PutObject with the SHA-256 checksum,
  which AWS, MinIO and Ceph verify before they store anything (BadDigest), then HeadObject to see
  the size and the checksum held. ``?verify=readback`` also reads the object back and hashes it,
  for servers that do not verify checksums (moto, the test server here, stores whatever
  checksum it is told: measured).

- ``sftp://user@host[:port]/path`` (paramiko): key authentication (``?key=FILE``, else the user's
  keys and agent), the host key checked against known_hosts (``?known_hosts=FILE``, else
  ~/.ssh/known_hosts; an unknown host is refused); written to ``<key>.part``, renamed over
  ``<key>`` (POSIX rename), then read back and its SHA-256 compared.

Temporary names and keys are deterministic: a copy sent again after a crash replaces the same
object and the same ``.part`` file, and never makes a second one.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Callable
from typing import IO, Protocol
from urllib.parse import parse_qs, unquote, urlparse

CHUNK = 1 << 20


class DeliveryError(Exception):
    """The target did not confirm a verified copy."""


class Target(Protocol):
    url: str

    def put(self, key: str, path: str, size: int, sha256: str) -> None: ...

    def open(self, key: str) -> IO[bytes]:
        """The object at ``key``, to read (the fleet plays an archived copy from it)."""
        ...


def stream_sha256(f) -> tuple[int, str]:
    """(size, hex SHA-256) of whatever ``f.read`` yields, in chunks: a local file, an S3 body, an
    SFTP file."""
    h = hashlib.sha256()
    n = 0
    while chunk := f.read(CHUNK):
        h.update(chunk)
        n += len(chunk)
    return n, h.hexdigest()


def file_sha256(path: str) -> tuple[int, str]:
    with open(path, "rb") as f:
        return stream_sha256(f)


def check_copy(got: tuple[int, str], size: int, sha256: str) -> None:
    """A copy read back from a target is the one sent, or ``DeliveryError``."""
    if got != (size, sha256):
        raise DeliveryError(f"read back {got[0]} bytes, SHA-256 {got[1][:12]}…, not {size} bytes {sha256[:12]}…")


class Throttle:
    """A token bucket shared by a target's transfers: at most ``bytes_per_s`` on average."""

    def __init__(self, bytes_per_s: float | None, clock: Callable[[], float] = time.monotonic):
        self.rate = bytes_per_s
        self.clock = clock
        self.t = clock()
        self.debt = 0.0
        self.lock = threading.Lock()  # the target's transfer threads share the bucket

    def take(self, n: int) -> None:
        if not self.rate:
            return
        with self.lock:
            now = self.clock()
            self.debt = max(0.0, self.debt - (now - self.t) * self.rate) + n
            self.t = now
            wait = self.debt / self.rate - 0.25  # a quarter second of burst
        if wait > 0:
            time.sleep(wait)


class _Metered:
    """A file read through a ``Throttle`` (boto3 reads the body through it)."""

    def __init__(self, f: IO[bytes], throttle: Throttle):
        self.f, self.throttle = f, throttle

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(min(n, CHUNK) if n and n > 0 else CHUNK)
        self.throttle.take(len(data))
        return data

    def seek(self, *a):
        return self.f.seek(*a)

    def tell(self):
        return self.f.tell()


class FileTarget:
    def __init__(self, url: str, root: str, throttle: Throttle | None = None):
        self.url, self.root = url, root
        self.throttle = throttle or Throttle(None)

    def put(self, key: str, path: str, size: int, sha256: str) -> None:
        dest = os.path.join(self.root, *key.split("/"))
        part = dest + ".part"
        try:
            os.makedirs(os.path.dirname(dest), mode=0o750, exist_ok=True)
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
            try:
                with open(path, "rb") as src:
                    while chunk := src.read(CHUNK):
                        self.throttle.take(len(chunk))
                        view = memoryview(chunk)
                        while view:
                            view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(part, dest)
            dfd = os.open(os.path.dirname(dest), os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            got = file_sha256(dest)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(part)
            raise DeliveryError(f"{type(e).__name__}: {e.strerror or e}") from None
        check_copy(got, size, sha256)

    def open(self, key: str) -> IO[bytes]:
        return open(os.path.join(self.root, *key.split("/")), "rb")


class S3Target:
    def __init__(
        self, url: str, bucket: str, prefix: str, throttle: Throttle | None = None, readback: bool = False, client=None
    ):
        self.url, self.bucket, self.prefix, self.readback = url, bucket, prefix, readback
        self.throttle = throttle or Throttle(None)
        self._client = client

    @property
    def client(self):
        if self._client is None:
            import boto3
            from botocore.config import Config

            # boto3 finds the endpoint (AWS_ENDPOINT_URL), region and credentials the standard way
            self._client = boto3.client("s3", config=Config(retries={"max_attempts": 2}, connect_timeout=5))
        return self._client

    def put(self, key: str, path: str, size: int, sha256: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        checksum = base64.b64encode(bytes.fromhex(sha256)).decode()
        try:
            with open(path, "rb") as f:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=_Metered(f, self.throttle),
                    ContentLength=size,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=checksum,  # the server refuses a body that does not match (BadDigest)
                )
            head = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
            got = (head.get("ContentLength"), head.get("ChecksumSHA256"))
            if got != (size, checksum):
                raise DeliveryError(f"the object holds {got[0]} bytes, SHA-256 {got[1]}; sent {size}, {checksum}")
            if self.readback:
                check_copy(stream_sha256(self.client.get_object(Bucket=self.bucket, Key=key)["Body"]), size, sha256)
        except (BotoCoreError, ClientError, OSError) as e:
            raise DeliveryError(f"{type(e).__name__}: {e}") from None

    def open(self, key: str) -> IO[bytes]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except (BotoCoreError, ClientError) as e:
            raise OSError(f"{type(e).__name__}: {e}") from None


class SftpTarget:
    def __init__(
        self, url: str, user: str, host: str, port: int, root: str, key_file: str | None, known_hosts: str | None,
        throttle: Throttle | None = None,
    ):  # fmt: skip
        self.url, self.user, self.host, self.port, self.root = url, user, host, port, root
        self.key_file, self.known_hosts = key_file, known_hosts
        self.throttle = throttle or Throttle(None)
        self.local = threading.local()  # one connection per transfer thread

    def _sftp(self):
        sftp = getattr(self.local, "sftp", None)
        if sftp is not None and sftp.get_channel().get_transport().is_active():
            return sftp
        import paramiko

        ssh = paramiko.SSHClient()
        ssh.set_missing_host_key_policy(paramiko.RejectPolicy())  # an unknown host key: refused
        ssh.load_host_keys(self.known_hosts or os.path.expanduser("~/.ssh/known_hosts"))
        own = self.key_file is None  # no key given: the user's own keys and agent
        ssh.connect(self.host, self.port, self.user, key_filename=self.key_file, timeout=10, banner_timeout=10,
                    auth_timeout=10, look_for_keys=own, allow_agent=own)  # fmt: skip
        self.local.ssh, self.local.sftp = ssh, ssh.open_sftp()
        return self.local.sftp

    def _makedirs(self, sftp, d: str) -> None:
        parts = d.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            p = "/" + "/".join(parts[:i])
            try:
                sftp.stat(p)
            except FileNotFoundError:
                try:
                    sftp.mkdir(p, 0o750)
                except OSError:  # made meanwhile by another transfer ("Failure"): fine if it is there now
                    sftp.stat(p)

    def put(self, key: str, path: str, size: int, sha256: str) -> None:
        import paramiko

        dest = "/".join([self.root.rstrip("/"), key])
        try:
            sftp = self._sftp()
            self._makedirs(sftp, dest.rsplit("/", 1)[0])
            with open(path, "rb") as src, sftp.open(dest + ".part", "wb") as out:
                out.set_pipelined(True)
                while chunk := src.read(CHUNK):
                    self.throttle.take(len(chunk))
                    out.write(chunk)
            sftp.chmod(dest + ".part", 0o640)
            sftp.posix_rename(dest + ".part", dest)
            with sftp.open(dest, "rb") as f:
                f.prefetch()
                got = stream_sha256(f)
        except (OSError, paramiko.SSHException, EOFError) as e:
            self.local.sftp = None
            raise DeliveryError(f"{type(e).__name__}: {e}") from None
        check_copy(got, size, sha256)

    def open(self, key: str) -> IO[bytes]:
        import paramiko

        try:
            f = self._sftp().open("/".join([self.root.rstrip("/"), key]), "rb")
        except (paramiko.SSHException, EOFError) as e:
            self.local.sftp = None
            raise OSError(f"{type(e).__name__}: {e}") from None
        f.prefetch()
        return f


def target_for(url: str, throttle: Throttle | None = None) -> Target:
    """The target a URL names; ValueError for one that cannot be used."""
    u = urlparse(url)
    if u.scheme == "file":
        if u.netloc not in ("", "localhost") or not u.path.startswith("/"):
            raise ValueError(f"{url}: a file URL is file:///absolute/path")
        return FileTarget(url, unquote(u.path), throttle)
    if u.scheme == "s3":
        if not u.netloc:
            raise ValueError(f"{url}: an S3 URL is s3://bucket/prefix")
        query = parse_qs(u.query)
        verify = query.pop("verify", ["checksum"])[-1]
        if verify not in ("checksum", "readback") or query:
            raise ValueError(f"{url}: the only option is verify=checksum|readback")
        base = f"s3://{u.netloc}/{u.path.strip('/')}".rstrip("/")  # the queue's name for it: without options
        return S3Target(base, u.netloc, u.path.strip("/"), throttle, readback=verify == "readback")
    if u.scheme == "sftp":
        query = parse_qs(u.query)
        key_file = query.pop("key", [None])[-1]
        known = query.pop("known_hosts", [None])[-1]
        if not u.hostname or not u.username or not u.path.startswith("/") or query:
            raise ValueError(f"{url}: an SFTP URL is sftp://user@host[:port]/path[?key=FILE&known_hosts=FILE]")
        base = f"sftp://{u.username}@{u.hostname}:{u.port or 22}{u.path.rstrip('/')}"
        return SftpTarget(base, u.username, u.hostname, u.port or 22, u.path, key_file, known, throttle)
    raise ValueError(f"{url}: unknown target (file:///path, s3://bucket/prefix or sftp://user@host/path)")


def prefix_of(target: Target) -> str:
    """The part of the key the URL gives (a file target's root is its path, not a prefix)."""
    return getattr(target, "prefix", "")
