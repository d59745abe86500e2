"""Crash-safe per-call outputs: an incremental stereo WAV, a per-call pcap and a JSON sidecar.

The WAV header always describes only audio that is already in the file: audio is
appended first, and the RIFF/data sizes are patched after (with ``durable`` after an
fdatasync, so a power loss cannot leave a header ahead of its data). A killed process
therefore leaves a valid WAV up to its last sync. The sidecar is replaced atomically.
"""
from __future__ import annotations

import json
import os
import struct

RATE = 8000
CHANNELS = 2


def wav_header(data_bytes: int, rate: int = RATE, channels: int = CHANNELS) -> bytes:
    block = channels * 2
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16,
                       1, channels, rate, rate * block, block, 16, b"data", data_bytes)


class WavWriter:
    """A 16-bit PCM WAV written as it grows."""

    def __init__(self, path: str):
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(self.fd, wav_header(0))
        self.data_bytes = 0
        self.synced_bytes = 0

    @property
    def frames(self) -> int:
        return self.data_bytes // (2 * CHANNELS)

    def append(self, pcm: bytes) -> None:
        if pcm:
            os.pwrite(self.fd, pcm, 44 + self.data_bytes)
            self.data_bytes += len(pcm)

    def sync(self, durable: bool = False) -> None:
        """Make the header cover everything appended so far."""
        if self.synced_bytes == self.data_bytes and not durable:
            return
        if durable:
            os.fdatasync(self.fd)
        os.pwrite(self.fd, wav_header(self.data_bytes), 0)
        self.synced_bytes = self.data_bytes
        if durable:
            os.fdatasync(self.fd)

    def truncate(self, frames: int) -> None:
        """Cut the recording to its first ``frames`` frames (a call that ended earlier than written)."""
        self.data_bytes = min(self.data_bytes, frames * 2 * CHANNELS)
        os.ftruncate(self.fd, 44 + self.data_bytes)
        self.sync()

    def close(self, durable: bool = True) -> None:
        if self.fd >= 0:
            self.sync(durable)
            os.close(self.fd)
            self.fd = -1


class PcapWriter:
    """A classic pcap (microsecond) of one call's raw frames."""

    def __init__(self, path: str, linktype: int):
        self.path = path
        self.linktype = linktype
        self.f = open(path, "wb")
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
        self.packets = 0

    def write(self, ts_ns: int, frame: bytes, linktype: int) -> bool:
        if linktype != self.linktype:
            return False
        sec, ns = divmod(ts_ns, 1_000_000_000)
        self.f.write(struct.pack("<IIII", sec, ns // 1000, len(frame), len(frame)))
        self.f.write(frame)
        self.packets += 1
        return True

    def flush(self):
        self.f.flush()

    def close(self):
        self.f.close()


def write_json_atomic(path: str, obj, durable: bool = False) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(obj, sort_keys=True, separators=(",", ":")))   # the C encoder
        f.write("\n")
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
