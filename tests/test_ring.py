"""TPACKET_V3 block walker: both kernels on built blocks, and agreement on random/corrupt ones."""

import struct

import pytest
from conftest import PY, C
from hypothesis import given, settings
from hypothesis import strategies as st

from capture.errors import ParseError, Truncated

BLOCK = 4096


def block(frames, ts=(1_790_000_000, 5)):
    """A retired TPACKET_V3 block holding ``frames`` the way the kernel lays them out."""
    first = 48
    pos = first
    hdrs = []
    for fr in frames:
        mac = 66  # tpacket3_hdr + sockaddr_ll area, as the kernel pads
        size = (mac + len(fr) + 15) & ~15
        hdrs.append((pos, size, mac, fr))
        pos += size
    out = bytearray(BLOCK)
    struct.pack_into("=IIIIIIQ", out, 0, 1, 0, 1, len(frames), first, pos, 7)
    for i, (p, size, mac, fr) in enumerate(hdrs):
        nxt = size if i + 1 < len(hdrs) else 0
        struct.pack_into("=IIIIIIHH", out, p, nxt, ts[0], ts[1] + i, len(fr), len(fr), 1, mac, mac + 14)
        out[p + mac : p + mac + len(fr)] = fr
    return bytes(out)


def test_walks_frames(impl):
    frames = [b"a" * 60, b"b" * 200, b"c" * 1500]
    buf = b"\0" * BLOCK + block(frames)
    offs, lens, tss, lts = impl.index_block(buf, BLOCK, BLOCK)
    assert [buf[o : o + n] for o, n in zip(offs, lens)] == frames
    assert list(tss) == [1_790_000_000_000_000_005 + i for i in range(3)] and set(lts) == {1}


def test_corrupt_block_raises(impl):
    b = bytearray(block([b"x" * 100]))
    struct.pack_into("=I", b, 48 + 12, 5000)  # snaplen past the block
    with pytest.raises(Truncated):
        impl.index_block(bytes(b), 0, BLOCK)
    with pytest.raises(Truncated):
        impl.index_block(b"\0" * 100, 0, BLOCK)


def _outcome(mod, buf):
    try:
        r = mod.index_block(buf, 0, BLOCK)
        return [list(map(int, x)) for x in r]
    except ParseError as e:
        return type(e), str(e)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=300), max_size=8),
    st.lists(st.tuples(st.integers(0, BLOCK - 1), st.integers(0, 255)), max_size=6),
)
def test_c_and_python_agree_on_mutated_blocks(frames, flips):
    b = bytearray(block(frames))
    for i, v in flips:
        b[i] = v
    assert _outcome(C, bytes(b)) == _outcome(PY, bytes(b))
