"""A recording's WAV file, written as it grows and resumed after a restart.

The header always describes only audio that is already in the file: audio is appended first,
and the two sizes are patched after (with ``durable`` after an fdatasync, so a power loss
cannot leave a header ahead of its data). A killed process therefore leaves a valid WAV up to
its last sync. The format itself is ``capture.media.wav``: 16-bit PCM, or the call's G.711
law (whose holes the writer fills with silence; a resumed file's are filled when it is opened).
"""

from __future__ import annotations

import contextlib
import os

from capture.media import wav
from capture.store.silence import fill_holes
from capture.store.writer import SyncIO, Writer


class WavWriter:
    """A recording's WAV written as it grows (or resumed after a restart: in the encoding its
    header says, whatever ``enc`` asks)."""

    def __init__(
        self, path: str, io: Writer | None = None, resume: bool = False, enc: wav.Encoding = wav.Encoding.PCM16
    ):
        self.path = path
        self.io = io or SyncIO()
        if resume and os.path.exists(path):
            self.fd = os.open(path, os.O_RDWR)
            head = os.pread(self.fd, wav.HEADER_BYTES, 0)
            self.enc = wav.encoding(head)
            fb = wav.frame_bytes(self.enc)
            size = os.fstat(self.fd).st_size
            self.data_bytes = min(wav.data_bytes(head), max(0, size - wav.HEADER_BYTES)) // fb * fb
            os.ftruncate(self.fd, wav.HEADER_BYTES + self.data_bytes)  # nothing past what the header vouches for
            with contextlib.suppress(OSError):  # a full disk: the writer fills them once it can
                fill_holes(self.fd, self.enc)
        else:
            self.enc = wav.Encoding(enc)
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o640)
            os.write(self.fd, wav.header(0, self.enc))
            self.data_bytes = 0
        self.frame_bytes = wav.frame_bytes(self.enc)
        self.io.silence(self.fd, self.enc)
        self.synced_bytes = self.data_bytes

    def reencode(self, enc: wav.Encoding) -> None:
        """Store samples in ``enc`` after all (only while the file holds no audio)."""
        if self.data_bytes:
            raise ValueError(f"{self.path} holds audio in {self.enc.name} already")
        self.enc, self.frame_bytes = wav.Encoding(enc), wav.frame_bytes(enc)
        self.io.pwrite(self.fd, wav.header(0, self.enc), 0)
        self.io.silence(self.fd, self.enc)

    @property
    def frames(self) -> int:
        return self.data_bytes // self.frame_bytes

    def advance(self, frames: int) -> None:
        """Audio up to ``frames`` was appended by a batch write (``SyncIO.write_batch``)."""
        self.data_bytes = max(self.data_bytes, frames * self.frame_bytes)

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
        self.io.pwrite(self.fd, wav.header(self.data_bytes, self.enc), 0)
        self.synced_bytes = self.data_bytes
        if durable:
            self.io.fdatasync(self.fd)

    def truncate(self, frames: int) -> None:
        """Cut the recording to its first ``frames`` frames (a call that ended earlier than written)."""
        self.data_bytes = min(self.data_bytes, frames * self.frame_bytes)
        self.io.truncate(self.fd, wav.HEADER_BYTES + self.data_bytes)
        self.sync()

    def close(self, durable: bool = True) -> None:
        if self.fd >= 0:
            self.sync(durable)
            self.io.close(self.fd)
            self.fd = -1
