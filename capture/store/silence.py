"""Holes in G.711 recordings, filled with silence.

Audio the disk could not take (full, failing, or a writer queue that had to drop) is left as a
hole: a sparse extension of the file, which needs no free blocks, so the header that counts it
stays true. In 16-bit PCM a hole reads as zeros, which is silence. In G.711 a zero byte is a
full-scale sample (µ-law 0x00 is -32124), so a G.711 recording's holes are filled with its law's
silence code as soon as the disk takes writes again.

The writer knows each hole it made (``fill``: ``capture.store.writer.Holes``). After a crash
those ranges are gone; resuming or closing the file then looks for them in the file itself
(``fill_holes``: ``SEEK_HOLE``/``SEEK_DATA``). That finds a hole only where it spans whole
filesystem blocks (4 KiB: 0.26 s of G.711 stereo); the zero bytes around it in the blocks at
its two ends are filled with it. A shorter hole left by a crash while the disk was full is not
found, and a filesystem without sparse files reports none.
"""

from __future__ import annotations

import errno
import os

from capture.media import wav

_CHUNK = 1 << 16


def sparse_regions(fd: int, start: int) -> list[tuple[int, int]]:
    """The sparse regions of the file from ``start`` on, as [begin, end) byte ranges."""
    size = os.fstat(fd).st_size
    regions = []
    pos = start
    while pos < size:
        try:
            hole = os.lseek(fd, pos, os.SEEK_HOLE)
        except OSError as e:
            if e.errno in (errno.ENXIO, errno.EINVAL):
                break
            raise
        if hole >= size:
            break
        try:
            data = os.lseek(fd, hole, os.SEEK_DATA)
        except OSError as e:
            if e.errno != errno.ENXIO:
                raise
            data = size
        regions.append((hole, data))
        pos = data
    return regions


def _zeros_before(fd: int, at: int, floor: int, block: int) -> int:
    a = max(floor, at - block)
    head = os.pread(fd, at - a, a)
    return len(head) - len(head.rstrip(b"\0"))


def _zeros_after(fd: int, at: int, block: int) -> int:
    tail = os.pread(fd, block, at)
    return len(tail) - len(tail.lstrip(b"\0"))


def fill(fd: int, enc: wav.Encoding, begin: int, end: int) -> int:
    """Write ``enc``'s silence over bytes [begin, end) of the recording (not past its end).
    Returns the bytes written; raises OSError if the disk refuses."""
    end = min(end, os.fstat(fd).st_size)
    silence = bytes([wav.SILENCE[enc]]) * max(0, min(_CHUNK, end - begin))
    pos = begin
    while pos < end:
        pos += os.pwrite(fd, silence[: end - pos], pos)
    return max(0, end - begin)


def fill_holes(fd: int, enc: wav.Encoding) -> int:
    """Write ``enc``'s silence over every hole in the audio of a G.711 recording open as ``fd``
    (read-write). Returns the bytes filled; raises OSError if the disk still refuses."""
    if enc not in wav.SILENCE:
        return 0
    block = max(os.fstat(fd).st_blksize, 4096)
    fb = wav.frame_bytes(enc)
    filled = 0
    for begin, end in sparse_regions(fd, wav.HEADER_BYTES):
        begin -= _zeros_before(fd, begin, wav.HEADER_BYTES, block)
        end += _zeros_after(fd, end, block)
        # holes are whole frames: the zeros of a frame they cut into are audio
        begin = wav.HEADER_BYTES + -(-(begin - wav.HEADER_BYTES) // fb) * fb
        end = wav.HEADER_BYTES + (end - wav.HEADER_BYTES) // fb * fb
        if end > begin:
            filled += fill(fd, enc, begin, end)
    return filled
