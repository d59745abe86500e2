"""AMR-NB's RTP payload format (capture/media/amr.py): both modes read back what a phone packs,
frame for frame, and anything else is an RtpError or Unsupported, never another exception."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capture.errors import ParseError, RtpError, Unsupported
from capture.media import amr


def bits(ft: int, raw: bytes) -> bytes:
    """``raw`` cut to frame type ``ft``'s speech bits, as octets (the unused low bits zero)."""
    if ft == amr.NO_DATA:
        return b""
    n = amr.BITS[ft]
    v = int.from_bytes(raw[: (n + 7) // 8].ljust((n + 7) // 8, b"\0"), "big")
    v &= ~((1 << (-n % 8)) - 1)
    return v.to_bytes((n + 7) // 8, "big")


FRAMES = st.lists(st.tuples(st.sampled_from([*range(9), amr.NO_DATA]), st.binary(min_size=31, max_size=31)),
                  min_size=1, max_size=6)  # fmt: skip


@given(FRAMES, st.booleans())
def test_what_a_phone_packs_reads_back_frame_for_frame(frames, octet_aligned):
    frames = [(ft, bits(ft, raw)) for ft, raw in frames]
    got = amr.parse(amr.pack(frames, octet_aligned), octet_aligned)
    assert [(f.ft, f.storage[1:]) for f in got] == frames
    assert all(f.storage[0] == (f.ft << 3) | 0x04 and f.quality for f in got)
    assert [f.speech for f in got] == [ft < 8 for ft, _ in frames]


@given(st.binary(max_size=80), st.booleans())
def test_any_payload_is_frames_or_a_parse_error(payload, octet_aligned):
    try:
        frames = amr.parse(payload, octet_aligned)
    except ParseError:
        return
    assert 1 <= len(frames) <= amr.MAX_FRAMES


@pytest.mark.parametrize(
    "payload, octet_aligned, error, match",
    [
        (b"\xf0", True, RtpError, "need 2"),
        (b"\xf0\xbc", True, RtpError, "runs past"),
        (b"\xf0\x3c" + b"\0" * 10, True, RtpError, "needs 31 bytes"),
        (b"\xf0\x4c", True, Unsupported, "frame type 9"),
        (b"\xf0" + b"\xbc" * 40, True, RtpError, "more than 32"),
        (b"\xf1\xf0", False, RtpError, "ends within"),
        (b"\xf7", False, RtpError, "ends within"),
    ],
)
def test_broken_payloads_are_exact_errors(payload, octet_aligned, error, match):
    with pytest.raises(error, match=match):
        amr.parse(payload, octet_aligned)
