"""TCP byte-stream reassembly for SIP over TCP.

Per direction of a connection it keeps the next expected sequence number, trims
retransmitted and overlapping segments, holds out-of-order ones (bounded), and frames
SIP messages by Content-Length. A stream that cannot be SIP, or a gap that never fills,
is resynchronised on the next SIP start line instead of being given up.
"""

from __future__ import annotations

import re

from capture.errors import SipError
from capture.sip import message as sip

MAX_BUFFER = 262144
MAX_OOO_BYTES = 262144
MAX_STREAMS = 65536
_START = re.compile(rb"(?:SIP/2\.0 [1-6]\d\d |[A-Z]{3,16} [^ \r\n]+ SIP/2\.0\r?\n)")
SYN, FIN, RST = 0x02, 0x01, 0x04


class _Stream:
    __slots__ = ("next_seq", "buf", "ooo", "ooo_bytes", "synced", "last_ns")

    def __init__(self, seq, synced, ts):
        self.next_seq = seq
        self.buf = bytearray()
        self.ooo = {}
        self.ooo_bytes = 0
        self.synced = synced
        self.last_ns = ts


class TcpReassembler:
    def __init__(self):
        self.streams: dict = {}
        self.counters = {
            "tcp_segments": 0,
            "tcp_retransmitted": 0,
            "tcp_out_of_order": 0,
            "tcp_gaps": 0,
            "tcp_resyncs": 0,
            "tcp_overflows": 0,
        }

    def feed(self, key, seq: int, flags: int, payload: bytes, ts: int) -> list:
        """Add one segment of the direction ``key``; return the SIP messages it completes."""
        c = self.counters
        c["tcp_segments"] += 1
        st = self.streams.get(key)
        if flags & SYN:
            st = _Stream((seq + 1) & 0xFFFFFFFF, True, ts)
            self._store(key, st)
            seq = (seq + 1) & 0xFFFFFFFF
        if st is None:
            if not payload:
                return []
            st = _Stream(seq, False, ts)  # joined mid-stream: wait for a start line
            self._store(key, st)
        st.last_ns = ts
        out: list = []
        if payload:
            rel = (seq - st.next_seq) & 0xFFFFFFFF
            if rel >= 0x80000000:
                rel -= 0x100000000
            if rel > 0:
                c["tcp_out_of_order"] += 1
                if seq not in st.ooo:
                    st.ooo[seq] = bytes(payload)
                    st.ooo_bytes += len(payload)
                if st.ooo_bytes > MAX_OOO_BYTES:
                    # the gap will not fill: skip it and resync on a start line
                    c["tcp_gaps"] += 1
                    first = min(st.ooo, key=lambda s: (s - st.next_seq) & 0xFFFFFFFF)
                    st.buf.clear()
                    st.synced = False
                    st.next_seq = first
                    self._drain(st)
            else:
                if -rel >= len(payload):
                    c["tcp_retransmitted"] += 1
                else:
                    if rel < 0:
                        c["tcp_retransmitted"] += 1
                    self._append(st, bytes(payload[-rel:]))
                    self._drain(st)
            out = self._frame(st)
        if flags & (FIN | RST):
            self.streams.pop(key, None)
        return out

    def _store(self, key, st):
        if key not in self.streams and len(self.streams) >= MAX_STREAMS:
            oldest = min(self.streams, key=lambda k: self.streams[k].last_ns)
            del self.streams[oldest]
        self.streams[key] = st

    def _append(self, st, data):
        st.buf += data
        st.next_seq = (st.next_seq + len(data)) & 0xFFFFFFFF

    def _drain(self, st):
        while st.ooo:
            progressed = False
            for s in list(st.ooo):
                rel = (s - st.next_seq) & 0xFFFFFFFF
                if rel >= 0x80000000:
                    rel -= 0x100000000
                if rel <= 0:
                    data = st.ooo.pop(s)
                    st.ooo_bytes -= len(data)
                    if -rel < len(data):
                        self._append(st, data[-rel:])
                    progressed = True
            if not progressed:
                break

    def _frame(self, st) -> list:
        out = []
        c = self.counters
        while st.buf:
            if not st.synced:
                m = _START.search(st.buf)
                if m is None:
                    keep = st.buf[-64:]
                    st.buf.clear()
                    st.buf += keep
                    break
                del st.buf[: m.start()]
                st.synced = True
                c["tcp_resyncs"] += 1
            while st.buf[:2] == b"\r\n":  # RFC 5626 keep-alives
                del st.buf[:2]
            if not st.buf:
                break
            try:
                n = sip.frame_length(st.buf)
            except SipError:
                c["tcp_resyncs"] += 1
                del st.buf[:1]
                st.synced = False
                continue
            if n is None:
                if len(st.buf) > MAX_BUFFER:
                    c["tcp_overflows"] += 1
                    st.buf.clear()
                    st.synced = False
                break
            out.append(bytes(st.buf[:n]))
            del st.buf[:n]
        return out

    def expire(self, now: int, idle_ns: int = 300 * 1_000_000_000):
        for k in [k for k, s in self.streams.items() if now - s.last_ns > idle_ns]:
            del self.streams[k]
