import os
import time
import wave

from capture.store.files import to_json
from capture.store.wavfile import WavWriter
from capture.store.writer import QueuedIO, SyncIO


def test_wav_header_always_covers_only_written_audio(tmp_path):
    p = str(tmp_path / "a.wav")
    w = WavWriter(p, SyncIO())
    w.append(b"\1\0\2\0" * 8000)
    w.sync()
    w.append(b"\3\0\4\0" * 100)  # appended, header not patched yet
    with wave.open(p) as f:
        assert f.getnframes() == 8000
    w.close()
    with wave.open(p) as f:
        assert f.getnframes() == 8100


def test_resume_trusts_the_header_not_the_file_length(tmp_path):
    p = str(tmp_path / "r.wav")
    w = WavWriter(p)
    w.append(b"\0" * 400)
    w.sync()
    os.pwrite(w.fd, b"junk", 44 + 400)  # bytes the header does not vouch for (a crash)
    w.io.close(w.fd)
    r = WavWriter(p, resume=True)
    assert r.frames == 100 and os.path.getsize(p) == 444
    r.append(b"\1\0" * 4)
    r.close()
    with wave.open(p) as f:
        assert f.getnframes() == 102


def test_queued_writer_drops_and_counts_instead_of_blocking(tmp_path):
    io = QueuedIO(max_bytes=2 << 20)
    p = str(tmp_path / "q.wav")
    w = WavWriter(p, io)
    chunk = b"\1\0" * (512 << 10)  # 1 MiB
    for _ in range(64):  # far faster than any disk: the queue overflows
        w.append(chunk)
    w.close()
    io.stop()
    assert io.dropped_bytes > 0 and io.dropped_bytes % len(chunk) == 0
    assert io.written_bytes >= 44 + len(chunk) and io.depth_bytes == 0
    with wave.open(p) as f:  # the header tells the truth; a dropped chunk is a hole
        assert f.getnframes() == 64 * len(chunk) // 4
    assert os.path.getsize(p) == 44 + 64 * len(chunk)


def test_queued_batch_is_written_whole_or_dropped_whole(tmp_path):
    import numpy as np

    io = QueuedIO(max_bytes=3 << 20)
    ws = [WavWriter(str(tmp_path / f"{k}.wav"), io) for k in range(2)]
    fds = np.array([w.fd for w in ws], dtype=np.int64)
    piece = 1 << 20
    for r in range(16):  # queued faster than written: some batches drop
        buf = io.buffer()
        buf[: 2 * piece] = r + 1  # a pooled buffer is the writer's until written
        io.write_batch(buf, fds, 44 + np.full(2, r * piece), np.full(2, piece))
    for w in ws:
        w.advance(16 * piece // 4)
        w.close()
    io.stop()
    assert io.dropped_bytes > 0 and io.dropped_bytes % (2 * piece) == 0
    assert io.dropped_bytes + io.written_bytes - 2 * 44 == 16 * 2 * piece  # 2 headers besides audio
    assert len(io._free) <= 3  # buffers came back to the pool and were reused
    for k in range(2):
        p = str(tmp_path / f"{k}.wav")
        assert os.path.getsize(p) == 44 + 16 * piece
        with wave.open(p) as f:
            assert f.getnframes() == 16 * piece // 4
        with open(p, "rb") as f:
            for r in range(16):
                f.seek(44 + r * piece)
                chunk = f.read(piece)
                assert chunk in (bytes([r + 1]) * piece, bytes(piece))  # that batch's own bytes, or a hole


def test_sidecars_and_commits_run_on_the_writer_thread_in_order(tmp_path):
    """Live capture hands sidecar writes and catalog commits to the writer thread: they are never
    dropped, run in the order given, and a failing commit is counted and logged, not fatal."""
    import threading

    io = QueuedIO(max_bytes=1 << 20)
    seen = []
    p = str(tmp_path / "c.json")
    w = WavWriter(str(tmp_path / "c.wav"), io)
    for k in range(50):  # the queue overflows with audio meanwhile
        w.append(b"\1\0" * (128 << 10))
        io.write_file(p, b'{"n": %d}\n' % k)
        io.call(lambda k=k: seen.append((k, threading.current_thread().name)))
    io.call(lambda: 1 / 0)
    io.write_file(p, b'{"n": "last"}\n', durable=True)
    w.close()
    io.stop()
    assert io.dropped_bytes > 0  # audio was dropped, the rest was not
    assert seen == [(k, "shadowrec-writer") for k in range(50)]
    assert open(p).read() == '{"n": "last"}\n' and not os.path.exists(p + ".tmp")
    assert io.errors == 1


def test_sync_io_writes_files_and_runs_calls_at_once(tmp_path):
    io, p, seen = SyncIO(), str(tmp_path / "s.json"), []
    io.write_file(p, b"{}\n")
    io.call(lambda: seen.append(open(p).read()))
    assert seen == ["{}\n"]


def test_to_json_is_compact_sorted_utf8_and_reads_back():
    import json

    import numpy as np

    obj = {"b": [1, 2.5, None, True], "a": {"device": "SEPÄÖ-ü", "dn": "2001"}, "n": np.int64(7), 3: "x"}
    text = to_json(obj)
    assert text == '{"3":"x","a":{"device":"SEPÄÖ-ü","dn":"2001"},"b":[1,2.5,null,true],"n":7}'
    assert json.loads(text) == {"3": "x", "a": {"device": "SEPÄÖ-ü", "dn": "2001"}, "b": [1, 2.5, None, True], "n": 7}


def test_audio_waits_for_the_writer_while_capture_can_afford_it(tmp_path):
    import threading

    room = threading.Event()
    room.set()
    io = QueuedIO(max_bytes=2 << 20, can_wait=room.is_set)
    gate = threading.Event()
    io.call(gate.wait)  # the writer is busy (a slow disk) until the gate opens
    w = WavWriter(str(tmp_path / "w.wav"), io)
    chunk = b"\1\0" * (512 << 10)  # 1 MiB
    w.append(chunk)
    w.append(chunk)  # the queue is full now
    threading.Timer(0.3, gate.set).start()
    t = time.monotonic()
    w.append(chunk)  # waits for the writer instead of dropping
    assert 0.2 < time.monotonic() - t < 5 and io.dropped_bytes == 0 and 0.2 < io.wait_s < 5
    while io.depth_bytes:  # written
        time.sleep(0.01)
    gate.clear()
    io.call(gate.wait)
    w.append(chunk)
    w.append(chunk)
    room.clear()  # capture cannot afford to wait: dropped, counted
    w.append(chunk)
    assert io.dropped_bytes == len(chunk)
    gate.set()
    w.close()
    io.stop()
    assert os.path.getsize(str(tmp_path / "w.wav")) == 44 + 6 * len(chunk)
    with wave.open(str(tmp_path / "w.wav")) as f:
        assert f.getnframes() == 6 * len(chunk) // 4


def test_queued_writer_hands_small_operations_over_together_in_order(tmp_path):
    """Sidecars, header patches and closes wait for ``flush`` (once a tick), an audio write or
    ``stop``; everything still happens in the order it was asked for."""
    io = QueuedIO()
    side = tmp_path / "call.json"
    io.write_file(str(side), b"first")
    io.write_file(str(side), b"second")
    time.sleep(0.05)
    assert not side.exists() and io.depth_bytes == len(b"first") + len(b"second")
    io.flush()
    w = WavWriter(str(tmp_path / "a.wav"), io)
    w.sync()
    w.append(b"\1\0" * 100)  # audio: goes after everything asked before it
    w.close(durable=False)
    io.write_file(str(side), b"third")
    io.stop()
    assert side.read_bytes() == b"third" and io.depth_bytes == 0 and io.errors == 0
    with wave.open(str(tmp_path / "a.wav")) as f:
        assert f.getnframes() == 50
