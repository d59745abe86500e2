"""Classic pcap files: the format shadowrec writes (a call's raw frames, synthetic captures),
defined once. Reading pcap and pcapng is the indexer's (``_pcapfile_py`` and its C twin)."""

from __future__ import annotations

import struct

MAGIC_US = 0xA1B2C3D4  # microsecond timestamps
MAGIC_NS = 0xA1B23C4D  # nanosecond timestamps
SNAPLEN = 262144
_FILE_HEADER = struct.Struct("<IHHiIII")
_RECORD_HEADER = struct.Struct("<IIII")
NS = 1_000_000_000


def file_header(linktype: int, nanoseconds: bool = False) -> bytes:
    """The 24-byte global header, little-endian, version 2.4."""
    return _FILE_HEADER.pack(MAGIC_NS if nanoseconds else MAGIC_US, 2, 4, 0, 0, SNAPLEN, linktype)


def record(ts_ns: int, frame: bytes, nanoseconds: bool = False) -> bytes:
    """One record: its 16-byte header (time, lengths) and the frame."""
    sec, ns = divmod(ts_ns, NS)
    return _RECORD_HEADER.pack(sec, ns if nanoseconds else ns // 1000, len(frame), len(frame)) + frame


def ng_header(linktype: int) -> bytes:
    """A pcapng section header and one interface description (nanosecond timestamps)."""
    shb = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
    opt = struct.pack("<HHB3x", 9, 1, 9) + struct.pack("<HH", 0, 0)  # if_tsresol = 10^-9
    idb_len = 20 + len(opt)
    idb = struct.pack("<IIHHI", 1, idb_len, linktype, 0, SNAPLEN) + opt + struct.pack("<I", idb_len)
    return shb + idb


def ng_record(ts_ns: int, frame: bytes) -> bytes:
    """One enhanced packet block on interface 0."""
    pad = (-len(frame)) % 4
    blen = 32 + len(frame) + pad
    return (
        struct.pack("<IIIIIII", 6, blen, 0, ts_ns >> 32, ts_ns & 0xFFFFFFFF, len(frame), len(frame))
        + frame
        + b"\0" * pad
        + struct.pack("<I", blen)
    )


class PcapWriter:
    """A capture file of one link type, written record by record: classic pcap with microsecond
    (a call's raw frames) or nanosecond timestamps, or pcapng (synthetic captures)."""

    def __init__(self, path: str, linktype: int, nanoseconds: bool = False, pcapng: bool = False):
        self.path = path
        self.linktype = linktype
        self.nanoseconds = nanoseconds
        self.pcapng = pcapng
        self.f = open(path, "wb")
        self.errors = 0  # writes that failed (a full disk): the file ends at the last whole record
        self.packets = 0
        self._put(ng_header(linktype) if pcapng else file_header(linktype, nanoseconds))

    def _put(self, data: bytes) -> None:
        try:
            self.f.write(data)
        except OSError:
            self.errors += 1

    def write(self, ts_ns: int, frame: bytes, linktype: int | None = None) -> bool:
        """Append a frame; False (nothing written) if it is of another link type."""
        if linktype is not None and linktype != self.linktype:
            return False
        self._put(ng_record(ts_ns, frame) if self.pcapng else record(ts_ns, frame, self.nanoseconds))
        self.packets += 1
        return True

    def flush(self) -> None:
        try:
            self.f.flush()
        except OSError:
            self.errors += 1

    def close(self) -> None:
        try:
            self.f.close()
        except OSError:
            self.errors += 1
