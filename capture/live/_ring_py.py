"""TPACKET_V3 block walker, pure Python: the twin of ext/ring.pyx.

``index_block(ring, block_off, block_size)`` reads one retired block of a PACKET_RX_RING
(host byte order, struct tpacket_block_desc then tpacket3_hdr per packet) and returns the
same arrays as the capture-file indexer: absolute offsets of each frame's first byte in
``ring``, captured lengths, timestamps in ns and link types (Ethernet).
"""

from __future__ import annotations

import struct

import numpy as np

from capture.errors import Truncated

_BLK = struct.Struct("=IIIIIIQ")  # version, offset_to_priv, status, num_pkts, first, blk_len, seq
_PKT = struct.Struct("=IIIIIIHH")  # next, sec, nsec, snaplen, len, status, mac, net


def index_block(ring, block_off: int, block_size: int):
    if block_size < 48 or block_off < 0 or block_off + block_size > len(ring):
        raise Truncated(f"block at {block_off} of {block_size} bytes does not fit the ring of {len(ring)}")
    _v, _p, _st, num, first, blen, _seq = _BLK.unpack_from(ring, block_off)
    if blen > block_size:
        raise Truncated(f"block length {blen} exceeds the block size {block_size}")
    if num > max(0, blen - 48) // 32:
        raise Truncated(f"block claims {num} packets, more than {blen} bytes can hold")
    offs, lens, tss = [], [], []
    pos = first
    for _ in range(num):
        if pos < 48 or pos + 32 > blen:
            raise Truncated(f"packet header at {pos} outside the block of {blen} bytes")
        nxt, sec, nsec, snap, _len, _status, mac, _net = _PKT.unpack_from(ring, block_off + pos)
        if pos + mac + snap > blen:
            raise Truncated(f"packet at {pos} ({mac}+{snap} bytes) overruns the block of {blen} bytes")
        offs.append(block_off + pos + mac)
        lens.append(snap)
        tss.append(sec * 1_000_000_000 + nsec)
        if nxt == 0:
            break
        pos += nxt
    n = len(offs)
    return (
        np.array(offs, dtype=np.int64),
        np.array(lens, dtype=np.int32),
        np.array(tss, dtype=np.int64),
        np.full(n, 1, dtype=np.int32),
    )
