"""Holes in G.711 recordings filled with silence (capture/store/silence.py and the writer's
Holes), on a real filesystem's sparse files: audio is never touched, every hole reads as the
law's silence afterwards."""

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capture.media import wav
from capture.media.wav import Encoding
from capture.store.silence import fill_holes, sparse_regions
from capture.store.wavfile import WavWriter
from capture.store.writer import QueuedIO, SyncIO

# the file as runs of frames: (written audio, frames) or (a hole, frames); a hole found in the
# file after a crash must span a whole block (4 KiB), so those drawn here are at least 2 blocks
runs = st.lists(
    st.one_of(st.tuples(st.just(True), st.integers(1, 9000)), st.tuples(st.just(False), st.integers(4096, 12000))),
    min_size=1,
    max_size=8,
)


def build(path, enc, layout, byte):
    """A recording laid out as ``layout``: audio frames of ``byte`` and holes, written as the
    writer does (pwrite for audio, ftruncate past the end for a hole)."""
    fb = wav.frame_bytes(enc)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o640)
    os.write(fd, wav.header(0, enc))
    pos, expect = wav.HEADER_BYTES, bytearray()
    for written, frames in layout:
        n = frames * fb
        if written:
            os.pwrite(fd, bytes([byte]) * n, pos)
        else:
            os.ftruncate(fd, pos + n)
        expect += bytes([byte if written else wav.SILENCE.get(enc, 0)]) * n
        pos += n
    os.pwrite(fd, wav.header(pos - wav.HEADER_BYTES, enc), 0)
    return fd, bytes(expect)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runs, st.sampled_from([Encoding.ULAW, Encoding.ALAW]), st.sampled_from([0x00, 0x10, 0xFF, 0x80]))
def test_after_a_crash_every_block_sized_hole_is_silence_and_audio_is_untouched(tmp_path, layout, enc, byte):
    fd, expect = build(str(tmp_path / "a.wav"), enc, layout, byte)
    try:
        fill_holes(fd, enc)
        got = os.pread(fd, len(expect) + 1, wav.HEADER_BYTES)
        if byte == 0x00:  # audio of zero bytes next to a hole cannot be told from it; away from one it is kept
            assert all(g == e or e == 0x00 for g, e in zip(got, expect, strict=True))
        else:
            assert got == expect
        assert sparse_regions(fd, wav.HEADER_BYTES) == []
        assert fill_holes(fd, enc) == 0  # nothing left to do
    finally:
        os.close(fd)


def test_pcm_recordings_are_left_alone(tmp_path):
    fd, _ = build(str(tmp_path / "p.wav"), Encoding.PCM16, [(True, 10), (False, 5000)], 1)
    try:
        assert fill_holes(fd, Encoding.PCM16) == 0 and sparse_regions(fd, wav.HEADER_BYTES)
    finally:
        os.close(fd)


@pytest.mark.parametrize("enc", [Encoding.ULAW, Encoding.ALAW])
def test_a_hole_at_the_end_is_filled_to_the_end(tmp_path, enc):
    fd, expect = build(str(tmp_path / "e.wav"), enc, [(True, 3), (False, 20000)], 0x33)
    try:
        assert fill_holes(fd, enc) == 2 * 20000
        assert os.pread(fd, 1 << 20, wav.HEADER_BYTES) == expect
    finally:
        os.close(fd)


def flaky_batch(fail):
    """A pwrite_batch whose pieces ``fail`` (by index) fail as a full disk's would."""
    from capture.media._engine_py import pwrite_batch

    def batch(buf, fds, offsets, lengths, failed_at=None):
        pos, bad = 0, 0
        for k in range(len(fds)):
            n = int(lengths[k])
            if k in fail:
                os.ftruncate(int(fds[k]), max(os.fstat(int(fds[k])).st_size, int(offsets[k]) + n))
                bad += 1
                if failed_at is not None:
                    failed_at[k] = 1
            else:
                pwrite_batch(buf[pos : pos + n], fds[k : k + 1], offsets[k : k + 1], lengths[k : k + 1])
            pos += n
        return bad

    return batch


@pytest.mark.parametrize("enc", [Encoding.ULAW, Encoding.ALAW])
def test_the_writer_fills_each_hole_it_made_even_a_short_one(tmp_path, enc):
    """A failed batch piece, a gap on a full disk and a dropped write: each is a hole of a few
    bytes inside a block, which no file scan could find; the writer fills them exactly."""
    import numpy as np

    io = SyncIO(flaky_batch({1}))
    w = WavWriter(str(tmp_path / "a.wav"), io, enc=enc)
    pcm = WavWriter(str(tmp_path / "p.wav"), io)  # 16-bit PCM: its holes stay zeros (silence there)
    buf = np.frombuffer(b"\x11" * 10 + b"\x22" * 10 + b"\x33" * 10, dtype=np.uint8).copy()
    fds = np.array([w.fd, w.fd, w.fd], dtype=np.int64)
    io.write_batch(buf, fds, np.array([44, 54, 64], dtype=np.int64), np.full(3, 10, dtype=np.int64))
    io.extend(w.fd, 74 + 6)  # a gap: the disk was full
    io.pwrite(w.fd, b"\x44" * 4, 80)
    io.extend(pcm.fd, 44 + 8)
    holed = b"\x11" * 10 + b"\0" * 10 + b"\x33" * 10 + b"\0" * 6 + b"\x44" * 4
    assert io.errors == 1 and os.pread(w.fd, 100, 44) == holed
    io.refill()
    s = bytes([wav.SILENCE[enc]])
    assert os.pread(w.fd, 100, 44) == b"\x11" * 10 + s * 10 + b"\x33" * 10 + s * 6 + b"\x44" * 4
    assert os.pread(pcm.fd, 100, 44) == b"\0" * 8 and io.holes.filled_bytes == 16
    w.close()
    pcm.close()


def test_a_queued_writer_fills_what_it_dropped(tmp_path):
    io = QueuedIO(max_bytes=1 << 20)
    w = WavWriter(str(tmp_path / "q.wav"), io, enc=Encoding.ULAW)
    chunk = b"\x12" * (1 << 20)
    for _ in range(16):  # far faster than any disk: the queue overflows and drops
        w.append(chunk)
    io.refill()
    w.close()
    io.stop()
    data = open(str(tmp_path / "q.wav"), "rb").read()[44:]
    assert io.dropped_bytes > 0 and len(data) == 16 << 20
    assert data.count(b"\0") == 0 and data.count(b"\xff") == io.dropped_bytes


def test_a_file_closed_with_a_hole_the_disk_refuses_stays_open_until_filled(tmp_path, monkeypatch):
    from capture.store import writer

    io = SyncIO()
    w = WavWriter(str(tmp_path / "c.wav"), io, enc=Encoding.ULAW)
    io.extend(w.fd, 44 + 100)
    real = writer.fill
    monkeypatch.setattr(writer, "fill", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    fd = w.fd
    w.close()
    assert fd in io.holes.closing and os.fstat(fd)  # still open: its hole waits for the disk
    io.refill()
    assert fd in io.holes.closing  # still full
    monkeypatch.setattr(writer, "fill", real)
    io.refill()
    assert not io.holes.closing and not io.holes.pending
    with pytest.raises(OSError):
        os.fstat(fd)
    assert open(str(tmp_path / "c.wav"), "rb").read()[44:] == b"\xff" * 100
