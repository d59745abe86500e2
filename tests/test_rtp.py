"""RTP headers and telephone events (capture/wire/rtp.py), and the C engine's header walk
(ext/rtp.pxi) agreeing with them on random and malformed packets."""

import struct

import pytest
from conftest import IMPLS
from hypothesis import given, settings
from hypothesis import strategies as st

from capture.errors import RtpError
from capture.wire import rtp
from capture.wire.frame import flow_key

KEY = flow_key(bytes([198, 18, 0, 20]), 20000)


def packet(pt=0, seq=7, ts=160, ssrc=0xCAFE, csrc=(), ext=None, pad=0, marker=False, payload=b"\x55" * 160):
    b0 = 0x80 | len(csrc) | (0x10 if ext is not None else 0) | (0x20 if pad else 0)
    out = struct.pack("!BBHII", b0, pt | (0x80 if marker else 0), seq, ts, ssrc)
    out += b"".join(struct.pack("!I", c) for c in csrc)
    if ext is not None:
        out += struct.pack("!HH", 0xBEDE, len(ext) // 4) + ext
    out += payload
    if pad:
        out += b"\0" * (pad - 1) + bytes([pad])
    return out


def test_header_fields_csrcs_extension_and_padding():
    h = rtp.parse(packet(pt=8, seq=65535, ts=0xFFFFFFF0, csrc=(1, 2), ext=b"\0" * 8, pad=4, marker=True))
    assert (h.marker, h.payload_type, h.sequence, h.timestamp, h.ssrc) == (True, 8, 65535, 0xFFFFFFF0, 0xCAFE)
    assert (h.payload_offset, h.payload_length) == (12 + 8 + 4 + 8, 160)


@pytest.mark.parametrize(
    "data,why",
    [
        (b"\x80" * 11, "not an RTP v2 header"),
        (packet()[:1].replace(b"\x80", b"\x40") + packet()[1:], "not an RTP v2 header"),
        (packet(csrc=(1,) * 15, payload=b"")[:70], "does not fit"),
        (packet(ext=b"\0" * 4, payload=b"")[:14], "extension header"),
        (b"\xa0" + packet(payload=b"\x01\x09")[1:], "padding of 9 bytes"),
        (b"\xa0" + packet(payload=b"\x01\x00")[1:], "padding of 0 bytes"),
    ],
)
def test_malformed_headers_raise_rtp_error(data, why):
    with pytest.raises(RtpError, match=why):
        rtp.parse(data)


def test_telephone_event_payload():
    ev = rtp.parse_event(bytes([11, 0x80 | 10, 0x03, 0x20]))
    assert (ev.event, ev.end, ev.volume, ev.duration) == (11, True, 10, 800)
    with pytest.raises(RtpError, match="telephone-event needs 4 bytes"):
        rtp.parse_event(b"\x01\x02\x03")


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=300)
@given(
    data=st.one_of(
        st.binary(max_size=64),
        st.builds(
            lambda cc, x, pad, n, cut: packet(
                csrc=(0,) * cc, ext=b"\0" * (4 * x) if x >= 0 else None, pad=pad, payload=b"\x01" * n
            )[:cut],
            st.integers(0, 15),
            st.integers(-1, 3),
            st.integers(0, 5),
            st.integers(0, 40),
            st.integers(0, 200),
        ),
    )
)
def test_the_engine_counts_malformed_exactly_what_parse_refuses(impl, data):
    e = impl.Engine((5060,))
    slot = e.add_call(0)
    e.set_stream(KEY, slot, 0, 1, 0, 101, False)
    e.feed_rtp(KEY, data, 1_000_000, None, False)
    try:
        rtp.parse(data)
        refused = 0
    except RtpError:
        refused = 1
    assert e.stream_stats(e.stream_id(KEY))["malformed"] == refused
