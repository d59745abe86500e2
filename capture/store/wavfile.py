"""A recording's WAV file, written as it grows and resumed after a restart.

The header always describes only audio that is already in the file: audio is appended first,
and the two sizes are patched after (with ``durable`` after an fdatasync, so a power loss
cannot leave a header ahead of its data). A killed process therefore leaves a valid WAV up to
its last sync. The format itself is ``capture.media.wav``.
"""

from __future__ import annotations

import os

from capture.media import wav
from capture.store.writer import SyncIO, Writer


class WavWriter:
    """A 16-bit PCM WAV written as it grows (or resumed after a restart)."""

    def __init__(self, path: str, io: Writer | None = None, resume: bool = False):
        self.path = path
        self.io = io or SyncIO()
        if resume and os.path.exists(path):
            self.fd = os.open(path, os.O_RDWR)
            n = wav.data_bytes(os.pread(self.fd, wav.HEADER_BYTES, 0))
            size = os.fstat(self.fd).st_size
            self.data_bytes = min(n, max(0, size - wav.HEADER_BYTES)) // wav.FRAME_BYTES * wav.FRAME_BYTES
            os.ftruncate(self.fd, wav.HEADER_BYTES + self.data_bytes)  # nothing past what the header vouches for
        else:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o640)
            os.write(self.fd, wav.header(0))
            self.data_bytes = 0
        self.synced_bytes = self.data_bytes

    @property
    def frames(self) -> int:
        return self.data_bytes // (wav.FRAME_BYTES)

    def advance(self, frames: int) -> None:
        """Audio up to ``frames`` was appended by a batch write (``SyncIO.write_batch``)."""
        self.data_bytes = max(self.data_bytes, frames * wav.FRAME_BYTES)

    def append(self, pcm: bytes) -> None:
        if pcm:
            self.io.pwrite(self.fd, pcm, wav.HEADER_BYTES + self.data_bytes)
            self.data_bytes += len(pcm)

    def sync(self, durable: bool = False) -> None:
        """Make the header cover everything appended so far."""
        if self.synced_bytes == self.data_bytes and not durable:
            return
        if durable:
            self.io.fdatasync(self.fd)
        self.io.pwrite(self.fd, wav.header(self.data_bytes), 0)
        self.synced_bytes = self.data_bytes
        if durable:
            self.io.fdatasync(self.fd)

    def truncate(self, frames: int) -> None:
        """Cut the recording to its first ``frames`` frames (a call that ended earlier than written)."""
        self.data_bytes = min(self.data_bytes, frames * wav.FRAME_BYTES)
        self.io.truncate(self.fd, wav.HEADER_BYTES + self.data_bytes)
        self.sync()

    def close(self, durable: bool = True) -> None:
        if self.fd >= 0:
            self.sync(durable)
            self.io.close(self.fd)
            self.fd = -1
