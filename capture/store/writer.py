"""The writer: how recordings reach the disk. ``SyncIO`` writes at once in the caller's thread
(offline recording); ``QueuedIO`` hands every write to one background thread through a bounded
queue (live capture), so that capture never waits for the disk."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from capture.media import wav
from capture.media._engine_py import hole
from capture.store.files import write_file_atomic
from capture.store.silence import fill

log = logging.getLogger("shadowrec")
BATCH_BYTES = 2 << 20  # one batch buffer: audio for many calls, handed to the writer whole


def _default_batch() -> PwriteBatch:
    from capture import speedups

    return speedups.default().engine.pwrite_batch


def _new_buffer() -> np.ndarray:
    return np.empty(BATCH_BYTES, dtype=np.uint8)


PwriteBatch = Callable[..., int]  # the engine's pwrite_batch(buf, fds, offsets, lengths, failed_at=None)


class Holes:
    """The holes a failed or dropped write left in G.711 recordings, until they are filled with
    silence (``capture.store.silence``). Used on the thread that writes: a file with a hole
    still unfilled when it is closed stays open until the disk takes the silence."""

    def __init__(self) -> None:
        self.enc: dict[int, wav.Encoding] = {}  # fd -> its encoding (G.711 files only)
        self.pending: dict[int, list[tuple[int, int]]] = {}  # fd -> byte ranges to fill
        self.closing: set[int] = set()  # closed by the recorder, left open until filled
        self.filled_bytes = 0
        self.abandoned = 0  # files closed at the end with holes the disk would not let us fill

    def status(self) -> dict[str, int]:
        """For the disk's status: files whose holes wait for the disk (or were left so at the end)."""
        return {"g711_holes_waiting": len(self.pending) + self.abandoned, "silence_filled_bytes": self.filled_bytes}

    def register(self, fd: int, enc: wav.Encoding) -> None:
        self.pending.pop(fd, None)
        if enc in wav.SILENCE:
            self.enc[fd] = enc
        else:
            self.enc.pop(fd, None)

    def add(self, fd: int, begin: int, end: int) -> None:
        """Bytes [begin, end) of ``fd`` were not written: a hole, if it is a G.711 file."""
        if fd in self.enc and end > begin:
            self.pending.setdefault(fd, []).append((begin, end))

    def marks(self, n: int) -> np.ndarray | None:
        """A byte per piece of a batch, for ``pwrite_batch`` to mark failures (None: no G.711 file)."""
        return np.zeros(n, dtype=np.uint8) if self.enc else None

    def batch_failed(self, fds: Any, offsets: Any, lengths: Any, marks: np.ndarray | None) -> None:
        if marks is not None:
            for k in np.flatnonzero(marks):
                self.add(int(fds[k]), int(offsets[k]), int(offsets[k]) + int(lengths[k]))

    def extend(self, fd: int, end: int, begin: int | None = None) -> None:
        """Make the file at least ``end`` bytes long with a hole; the bytes from ``begin`` (or
        the file's end) were not written."""
        try:
            size = os.fstat(fd).st_size
        except OSError:
            return
        hole(fd, end)
        self.add(fd, size if begin is None else begin, end)

    def _fill(self, fd: int) -> bool:
        try:
            for begin, end in self.pending.get(fd, ()):
                self.filled_bytes += fill(fd, self.enc[fd], begin, end)
        except OSError:
            return False
        self.pending.pop(fd, None)
        return True

    def refill(self) -> None:
        """Fill what the disk now takes; close the files that only waited for that."""
        for fd in list(self.pending):
            if self._fill(fd) and fd in self.closing:
                self.closing.discard(fd)
                self.enc.pop(fd, None)
                os.close(fd)

    def closable(self, fd: int) -> bool:
        """The recorder closes ``fd``: True if it may be closed now (no hole left unfilled)."""
        if fd in self.pending and not self._fill(fd):
            self.closing.add(fd)
            return False
        self.enc.pop(fd, None)
        return True

    def abandon(self) -> int:
        """At the end: close what still waits; returns how many files keep unfilled holes."""
        self.refill()
        for fd in self.closing:
            os.close(fd)
        n = len(self.closing)
        self.abandoned += n
        self.closing, self.pending = set(), {}
        if n:
            log.error("writer: %d G.711 recordings keep holes the full disk would not let us fill with silence", n)
        return n


class Writer(Protocol):
    """What the recorder writes through: ``SyncIO`` (offline) or ``QueuedIO`` (live).

    Neither raises on a failed write (a full disk, an I/O error): the failure is counted in
    ``errors`` (the last one in ``last_error``), an audio write leaves a hole of its length (it
    reads as silence, so a WAV header that counts it stays true; a G.711 file's holes are
    filled with its silence code by ``refill``, see ``Holes``), and the caller carries on.
    """

    holes: Holes
    depth_bytes: int
    dropped_bytes: int
    written_bytes: int
    errors: int
    last_error: str

    def buffer(self) -> np.ndarray: ...
    def release(self, buf: np.ndarray) -> None: ...
    def pwrite(self, fd: int, data: bytes, offset: int) -> None: ...
    def write_batch(self, buf: np.ndarray, fds: Any, offsets: Any, lengths: Any, droppable: bool = True) -> None: ...
    def fdatasync(self, fd: int) -> None: ...
    def silence(self, fd: int, enc: wav.Encoding) -> None: ...
    def refill(self) -> None: ...
    def write_file(self, path: str, data: bytes, durable: bool = False) -> None: ...
    def call(self, fn: Callable[[], object]) -> None: ...
    def close(self, fd: int) -> None: ...
    def truncate(self, fd: int, size: int) -> None: ...
    def extend(self, fd: int, size: int) -> None: ...
    def failed(self, what: str, e: BaseException) -> None: ...
    def flush(self) -> None: ...
    def stop(self) -> None: ...
    def cpu_s(self) -> float: ...


class SyncIO:
    """Writes done at once, in the caller's thread (offline recording)."""

    depth_bytes = 0
    dropped_bytes = 0

    def __init__(self, pwrite_batch: PwriteBatch | None = None):
        self._batch = pwrite_batch or _default_batch()
        self._buf: np.ndarray | None = None
        self.written_bytes = 0
        self.errors = 0
        self.last_error = ""
        self.holes = Holes()

    def failed(self, what: str, e: BaseException) -> None:
        """Count a failure the caller met (creating a file on a full disk)."""
        self._failed(what, e)

    def _failed(self, what: str, e: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{what}: {e}"
        if self.errors <= 10:
            log.error("writer: %s", self.last_error)

    def buffer(self) -> np.ndarray:
        """A batch buffer to fill (give it to ``write_batch`` or back with ``release``)."""
        if self._buf is None:
            self._buf = _new_buffer()
        return self._buf

    def release(self, buf: np.ndarray) -> None:
        pass

    def pwrite(self, fd: int, data: bytes, offset: int) -> None:
        try:
            done = 0
            while done < len(data):
                done += os.pwrite(fd, data[done:], offset + done)
            self.written_bytes += len(data)
        except OSError as e:
            self._failed("pwrite", e)
            hole(fd, offset + len(data))
            self.holes.add(fd, offset, offset + len(data))

    def write_batch(self, buf: np.ndarray, fds: Any, offsets: Any, lengths: Any, droppable: bool = True) -> None:
        """Consecutive pieces of ``buf`` to (fd, offset), in order (the C kernel: no GIL)."""
        marks = self.holes.marks(len(fds))
        failed = self._batch(buf, fds, offsets, lengths, marks)
        if failed:
            self._failed("a batch write", OSError(f"{failed} of {len(fds)} pieces failed"))
            self.errors += failed - 1
            self.holes.batch_failed(fds, offsets, lengths, marks)
        self.written_bytes += int(np.sum(lengths))

    def silence(self, fd: int, enc: wav.Encoding) -> None:
        """``fd`` is a recording in ``enc``: its holes are to be filled with silence (G.711)."""
        self.holes.register(fd, enc)

    def refill(self) -> None:
        """Fill the G.711 recordings' holes with silence, now that the disk takes writes."""
        self.holes.refill()

    def fdatasync(self, fd: int) -> None:
        try:
            os.fdatasync(fd)
        except OSError as e:
            self._failed("fdatasync", e)

    def write_file(self, path: str, data: bytes, durable: bool = False) -> None:
        """Replace ``path`` with ``data`` atomically (a sidecar)."""
        try:
            write_file_atomic(path, data, durable)
            self.written_bytes += len(data)
        except OSError as e:
            self._failed(os.path.basename(path), e)

    def call(self, fn: Callable[[], object]) -> None:
        """Run ``fn()`` in order with the writes (a catalog commit); a failure is counted."""
        try:
            fn()
        except Exception as e:  # OSError, or a catalog commit's sqlite3.Error
            self._failed(type(e).__name__, e)

    def close(self, fd: int) -> None:
        try:
            if self.holes.closable(fd):
                os.close(fd)
        except OSError as e:
            self._failed("close", e)

    def truncate(self, fd: int, size: int) -> None:
        try:
            os.ftruncate(fd, size)
        except OSError as e:
            self._failed("ftruncate", e)

    def extend(self, fd: int, size: int) -> None:
        """Make the file at least ``size`` bytes long with a hole (audio not written: silence)."""
        self.holes.extend(fd, size)

    def flush(self) -> None:
        pass

    def stop(self) -> None:
        self.holes.abandon()

    def cpu_s(self) -> float:
        return 0.0


class QueuedIO:
    """Writes handed to one background thread through a bounded queue (live capture).

    Capture never has to wait for the disk: when more than ``max_bytes`` are queued, audio
    writes are dropped and counted (``dropped_bytes``); the file keeps its length (a hole
    reads as silence) so the header stays true. But while ``can_wait()`` says so (live
    capture: its kernel ring is under half full, so it holds what arrives meanwhile), audio
    that would be dropped waits for the writer instead (``wait_s``). Header patches, syncs
    and closes are never dropped, and everything for one file happens in order. Batch
    buffers are pooled: the writer thread gives each back once written, so nothing is
    copied or allocated per batch.

    Those small never-dropped operations (a call's sidecars, header patches, closes, catalog
    commits) are gathered and handed over together by ``flush``, which the capture loop calls
    once per tick, and which every audio write and ``stop`` do first, so the order of all
    operations stays the order of the calls. One hand-over per operation woke the writer
    thread each time, and the two threads then passed the GIL back and forth.
    """

    def __init__(
        self,
        max_bytes: int = 64 << 20,
        pwrite_batch: PwriteBatch | None = None,
        can_wait: Callable[[], bool] | None = None,
    ):
        import queue
        import threading

        self._batch = pwrite_batch or _default_batch()
        self.max_bytes = max_bytes
        self.can_wait = can_wait
        self.depth_bytes = 0
        self.dropped_bytes = 0
        self.wait_s = 0.0
        self.written_bytes = 0
        self.errors = 0
        self.last_error = ""
        self.holes = Holes()  # used on the writer thread only
        self._free: list[np.ndarray] = []
        self._pending: list[tuple] = []  # small operations not yet handed over (see flush)
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)  # notified as the queue shrinks
        self._t = threading.Thread(target=self._run, name="shadowrec-writer", daemon=True)
        self._t.start()

    def buffer(self) -> np.ndarray:
        """A batch buffer to fill (give it to ``write_batch`` or back with ``release``)."""
        with self._lock:
            if self._free:
                return self._free.pop()
        return _new_buffer()

    def release(self, buf: np.ndarray) -> None:
        with self._lock:
            self._free.append(buf)

    def _admit(self, n: int, droppable: bool) -> bool:
        """Count ``n`` bytes into the queue (True), or drop them (False): only audio, only when
        the queue is full and, for as long as ``can_wait()`` allows, the writer has not caught up.
        Call with the lock held."""
        if droppable and self.depth_bytes + n > self.max_bytes and self.can_wait is not None:
            t0 = time.monotonic()
            while self.depth_bytes + n > self.max_bytes and self.depth_bytes and self.can_wait():
                self._drained.wait(0.02)
            self.wait_s += time.monotonic() - t0
        if droppable and self.depth_bytes + n > self.max_bytes:
            self.dropped_bytes += n
            return False
        self.depth_bytes += n
        return True

    def _put(self, op: str, fd: Any, data: bytes | None, offset: int, droppable: bool) -> None:
        n = len(data) if data else 0
        if droppable:
            self.flush()  # first: what waits for room must not wait on what was never handed over
        with self._lock:
            drop = not self._admit(n, droppable)
        if not droppable:
            self._pending.append((op, fd, data, offset, n))
            return
        if drop:  # keep the file as long as the header will say: the hole reads as silence
            self._q.put(("x", fd, offset, offset + n, 0))
        else:
            self._q.put((op, fd, data, offset, n))

    def flush(self) -> None:
        """Hand the small operations gathered since the last flush to the writer, in order."""
        if self._pending:
            ops, self._pending = self._pending, []
            self._q.put(("l", ops, None, 0, 0))

    def pwrite(self, fd: int, data: bytes, offset: int) -> None:
        self._put("w", fd, data, offset, len(data) > 64)

    def write_batch(self, buf: np.ndarray, fds: Any, offsets: Any, lengths: Any, droppable: bool = True) -> None:
        """Pieces of a ``buffer()`` for many files: queued whole, or (audio) dropped whole when
        the queue is full. The buffer belongs to the writer from here on."""
        n = int(np.sum(lengths))
        self.flush()
        with self._lock:
            drop = not self._admit(n, droppable)
            if drop:
                self._free.append(buf)
        if drop:  # each file keeps the length its header will claim: the hole reads as silence
            for fd, off, ln in zip(fds, offsets, lengths):
                self._q.put(("x", int(fd), int(off), int(off) + int(ln), 0))
        else:
            self._q.put(("b", (fds, offsets, lengths), buf, 0, n))

    def fdatasync(self, fd: int) -> None:
        self._put("s", fd, None, 0, False)

    def silence(self, fd: int, enc: wav.Encoding) -> None:
        """``fd`` is a recording in ``enc``: its holes are to be filled with silence (G.711)."""
        self._put("g", fd, None, int(enc), False)

    def refill(self) -> None:
        """Fill the G.711 recordings' holes with silence, now that the disk takes writes."""
        self._put("r", -1, None, 0, False)

    def write_file(self, path: str, data: bytes, durable: bool = False) -> None:
        """Replace ``path`` with ``data`` atomically, on the writer thread (never dropped)."""
        self._put("j", (path, durable), data, 0, False)

    def call(self, fn: Callable[[], object]) -> None:
        """Run ``fn()`` on the writer thread, in order with the writes (a catalog commit); an
        exception is logged and counted in ``errors``."""
        self._put("f", fn, None, 0, False)

    def close(self, fd: int) -> None:
        self._put("c", fd, None, 0, False)

    def truncate(self, fd: int, size: int) -> None:
        self._put("t", fd, None, size, False)

    def extend(self, fd: int, size: int) -> None:
        """Make the file at least ``size`` bytes long with a hole (audio not written: silence)."""
        self._put("x", fd, None, size, False)

    def failed(self, what: str, e: BaseException) -> None:
        """Count a failure the caller met (creating a file on a full disk)."""
        with self._lock:
            self.errors += 1
            self.last_error = f"{what}: {e}"

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item[0] == "q":
                return
            for op in item[1] if item[0] == "l" else (item,):
                self._do(*op)

    def _do(self, op: str, fd: Any, data: Any, offset: int, n: int) -> None:
        try:
            if op == "w":
                try:
                    os.pwrite(fd, data, offset)
                except OSError:
                    self.holes.add(fd, offset, offset + len(data))
                    raise
                finally:
                    hole(fd, offset + len(data))  # a no-op once written; a hole if the write failed
                self.written_bytes += n
            elif op == "b":
                fds, offsets, lengths = fd
                try:
                    marks = self.holes.marks(len(fds))
                    failed = self._batch(data, fds, offsets, lengths, marks)
                    if failed:
                        self.errors += failed
                        self.last_error = f"a batch write: {failed} of {len(fds)} pieces failed"
                        self.holes.batch_failed(fds, offsets, lengths, marks)
                    self.written_bytes += n
                finally:
                    self.release(data)
            elif op == "s":
                os.fdatasync(fd)
            elif op == "c":
                if self.holes.closable(fd):
                    os.close(fd)
            elif op == "t":
                os.ftruncate(fd, offset)
            elif op == "x":  # a hole to ``offset`` (from ``data``, a dropped write's start)
                self.holes.extend(fd, offset, data)
            elif op == "g":
                self.holes.register(fd, wav.Encoding(offset))
            elif op == "r":
                self.holes.refill()
            elif op == "j":
                write_file_atomic(fd[0], data, fd[1])
                self.written_bytes += n
            elif op == "f":
                fd()
        except Exception as e:  # OSError, or a catalog commit's sqlite3.Error: counted, logged
            self.errors += 1
            self.last_error = f"{type(e).__name__}: {e}"
            if self.errors <= 10:
                log.error("writer: %s", self.last_error)
        with self._lock:
            self.depth_bytes -= n
            if n:
                self._drained.notify_all()

    def cpu_s(self) -> float:
        """CPU seconds the writer thread has used (0 once it has ended)."""
        try:
            return time.clock_gettime(time.pthread_getcpuclockid(self._t.ident or 0))
        except (OSError, TypeError):
            return 0.0

    def stop(self) -> None:
        """Finish everything queued, then end the thread."""
        self.flush()
        self._q.put(("q", -1, None, 0, 0))
        self._t.join()
        self.holes.abandon()
