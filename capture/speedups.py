"""The one switch between the Cython kernels (built from ext/) and their pure-Python twins.

``load()`` returns a ``Kernels`` record whose fields are typed by the Protocols below: a type
checker (mypy, in the test command) holds the C modules (through their ``.pyi`` stubs beside
them) and the twins to the same signatures. ``SHADOWREC_PURE=1`` forces the twins; without it
the C kernels are used when they are built, and the twins otherwise (with a warning, since they
are ~30x slower).

    kernel          C (ext/)            its twin                          its stub
    frame parse     packet.pyx          capture/wire/_packet_py.py        capture/wire/_packet_c.pyi
    file indexer    pcapfile.pyx        capture/wire/_pcapfile_py.py      capture/wire/_pcapfile_c.pyi
    SIP parse       sip.pyx             capture/sip/message.py            capture/sip/_message_c.pyi
    engine          engine.pyx (+.pxi)  capture/media/_engine_py.py       capture/media/_engine_c.pyi
    G.711           g711.pyx            capture/media/_g711_py.py         capture/media/_g711_c.pyi
    ring walker     ring.pyx            capture/live/_ring_py.py          capture/live/_ring_c.pyi
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from capture.sip.message import SipMessage
from capture.wire.frame import Frame

Batch = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # offsets, lengths, ns timestamps, link types


class PacketKernel(Protocol):
    def parse(self, data: Any, linktype: int) -> Frame: ...


class SipKernel(Protocol):
    def parse(self, data: Any) -> SipMessage: ...


class IndexerLike(Protocol):
    @property
    def error(self) -> str | None: ...
    @property
    def records(self) -> int: ...
    def next_batch(self, max_records: int = 65536) -> Batch: ...


class PcapfileKernel(Protocol):
    def Indexer(self, buf: Any) -> IndexerLike: ...  # noqa: N802  (the class)


class RingKernel(Protocol):
    def index_block(self, ring: Any, block_off: int, block_size: int) -> Batch: ...


class G711Kernel(Protocol):
    ULAW_TABLE: np.ndarray
    ALAW_TABLE: np.ndarray

    def ulaw_to_linear(self, code: int) -> int: ...
    def alaw_to_linear(self, code: int) -> int: ...
    def decode_ulaw(self, data: Any) -> np.ndarray: ...
    def decode_alaw(self, data: Any) -> np.ndarray: ...


class EngineLike(Protocol):
    """Flow table, per-stream RTP state and per-call audio rings (see capture/media/_engine_py.py)."""

    @property
    def counters(self) -> dict[str, int]: ...
    @property
    def flows(self) -> dict[int, int]: ...
    def reserve(self, calls: int) -> int: ...
    def watch(self, addr: bytes) -> bool: ...
    @property
    def watched(self) -> frozenset[bytes]: ...
    def add_call(self, start_ns: int, flushed: int = 0, last_rtp_ns: int = 0) -> int: ...
    def end_call(self, slot: int) -> None: ...
    def set_writing(self, slot: int, on: bool, encoding: int = 0) -> None: ...
    def flushed(self, slot: int) -> int: ...
    def last_rtp_ns(self, slot: int) -> int: ...
    def placed_end(self, slot: int) -> int: ...
    def flush(self, slot: int, upto: int) -> bytes: ...
    def flush_due(self, now_ns: int, lag: int, out: Any, idle_ns: int = 0) -> tuple[int, np.ndarray]: ...
    def headers_due(self, out: Any) -> tuple[int, np.ndarray]: ...
    def set_synced(self, slot: int, frames: int) -> None: ...
    def set_stream(
        self, key: int, slot: int, channel: int, codec: int, audio_pt: int, event_pt: int, raw: bool
    ) -> int: ...
    def remove_stream(self, key: int) -> None: ...
    def stream_id(self, key: int) -> int | None: ...
    def anchor(self, sid: int) -> tuple[int, int, int] | None: ...
    def set_anchor(self, sid: int, ssrc: int, pos: int, rtp_ts: int) -> None: ...
    def stream_stats(self, sid: int) -> dict[str, Any]: ...
    def lost_total(self) -> int: ...
    def run(
        self, buf: Any, offs: Any, lens: Any, tss: Any, lts: Any, i: int, n: int, deadline: int
    ) -> tuple[int, int, int]: ...
    def feed_rtp(self, key: int, data: Any, ts: int, src_key: int | None, force: bool) -> int: ...


class EngineKernel(Protocol):
    DONE: int
    PYTHON: int
    EVENT: int
    TICK: int
    EVENT_RAW: int
    EVENT_TELEPHONE: int
    AUDIO: bool

    def Engine(self, sip_ports: Iterable[int] = (5060,)) -> EngineLike: ...  # noqa: N802  (the class)
    def pwrite_batch(self, buf: Any, fds: Any, offsets: Any, lengths: Any, failed_at: Any = None) -> int: ...


@dataclass(frozen=True)
class Kernels:
    """One set of kernels, all C or all Python."""

    name: str  # "c" or "python"
    packet: PacketKernel
    pcapfile: PcapfileKernel
    sip: SipKernel
    engine: EngineKernel
    g711: G711Kernel
    ring: RingKernel

    def Engine(self, sip_ports: Iterable[int] = (5060,)) -> EngineLike:  # noqa: N802
        return self.engine.Engine(sip_ports)

    def Indexer(self, buf: Any) -> IndexerLike:  # noqa: N802
        return self.pcapfile.Indexer(buf)

    def index_block(self, ring: Any, block_off: int, block_size: int) -> Batch:
        return self.ring.index_block(ring, block_off, block_size)


def _c() -> Kernels:
    from capture.live import _ring_c
    from capture.media import _engine_c, _g711_c
    from capture.sip import _message_c
    from capture.wire import _packet_c, _pcapfile_c

    return Kernels("c", _packet_c, _pcapfile_c, _message_c, _engine_c, _g711_c, _ring_c)


def _python() -> Kernels:
    from capture.live import _ring_py
    from capture.media import _engine_py, _g711_py
    from capture.sip import message
    from capture.wire import _packet_py, _pcapfile_py

    return Kernels("python", _packet_py, _pcapfile_py, message, _engine_py, _g711_py, _ring_py)


def load(pure: bool = False) -> Kernels:
    """The C kernels (unless ``pure`` or they are not built), else the twins."""
    if not pure:
        try:
            kernels = _c()
        except ImportError as e:  # not built (e.g. a source checkout without setup.py build_ext)
            warnings.warn(
                f"shadowrec C kernels unavailable ({e}); using the pure-Python twins", RuntimeWarning, stacklevel=2
            )
        else:
            if not kernels.engine.AUDIO:
                warnings.warn(
                    "shadowrec was built with SHADOWREC_NO_AUDIO (a benchmark floor): recordings will be silence",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return kernels
    return _python()


def default() -> Kernels:
    return load(pure=os.environ.get("SHADOWREC_PURE", "") == "1")
