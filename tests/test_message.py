import pytest
from conftest import IMPLS, PY, C, sip_sample
from hypothesis import given, settings
from hypothesis import strategies as st

from capture.errors import ParseError, SipError, Truncated
from capture.sip import message as sip

both = pytest.mark.parametrize("impl", IMPLS)


@both
def test_cucm_invite_nearend(impl):
    m = impl.sip.parse(sip_sample("bib_01_cucm10.5_udp_INVITE_nearend_delayed_offer.txt"))
    assert m.method == "INVITE" and m.cseq == (101, "INVITE") and m.body == b""
    assert m.call_id == "abbb8e00-4291f775-204c-5a20300e@10.48.32.90"
    fr = m.from_
    assert fr.uri_param("x-nearend") == "" and fr.uri_param("x-refci") == "38960750"
    assert fr.uri_param("x-nearenddevice") == "sep001795bdd16b" and fr.param("tag").startswith("73601~")
    assert m.header_all("supported") == ["timer,resource-priority,replaces", "X-cisco-srtp-fallback", "Geolocation"]
    assert m.to.param("tag") is None and m.branch == "z9hG4bK204d520fedb3"


@both
def test_recorder_200_ok_body_framed_by_content_length(impl):
    m = impl.sip.parse(sip_sample("bib_02_recorder_200OK_sdp_offer_to_nearend_INVITE.txt"))
    assert m.status == 200 and m.content_type == "application/sdp"
    assert m.body.startswith(b"v=0") and len(m.body) == 135 and m.body.endswith(b"PCMU/8000\r\n")


@both
def test_bye_with_run_together_headers_survives(impl):
    m = impl.sip.parse(sip_sample("bib_05_cucm10.5_udp_BYE_farend_reason_q850_cause47.txt"))
    assert m.method == "BYE" and m.cseq == (102, "BYE")


@both
def test_compact_forms_case_and_folding(impl):
    raw = (
        b"OPTIONS sip:rec@198.18.0.20 SIP/2.0\r\nv: SIP/2.0/UDP 198.18.0.10;branch=z9hG4bKx\r\n"
        b"f: <sip:a@198.18.0.10>;tag=1\r\nT: <sip:rec@198.18.0.20>\r\ni: abc@x\r\nCSEQ: 7 options\r\n"
        b"Subject: first\r\n  continued\r\nl: 0\r\n\r\n"
    )
    m = impl.sip.parse(raw)
    assert m.call_id == "abc@x" and m.cseq == (7, "OPTIONS") and m.header("SUBJECT") == "first continued"
    assert m.header("via").startswith("SIP/2.0/UDP") and m.from_.param("tag") == "1"


@pytest.mark.parametrize(
    "raw,exc",
    [
        (b"", Truncated),
        (b"INVITE sip:x SIP/2.0\r\nContent-Length: 99999999\r\n\r\n", SipError),
        (b"INVITE sip:x SIP/2.0\r\nContent-Length: 10\r\n\r\nabc", Truncated),
        (b"HELLO\r\n\r\n", SipError),
        (b"SIP/2.0 99x OK\r\n\r\n", SipError),
        (b"INVITE sip:x SIP/2.0\r\nno colon here\r\n\r\n", SipError),
        (b"\xff\xfe SIP/2.0\r\n\r\n", SipError),
    ],
)
@both
def test_bad_messages_raise_clear_errors(impl, raw, exc):
    with pytest.raises(exc):
        impl.sip.parse(raw)


def test_frame_length_for_tcp():
    a = b"BYE sip:x SIP/2.0\r\nCall-ID: 1\r\nContent-Length: 3\r\n\r\nabc"
    assert sip.frame_length(a + b"INV") == len(a)
    assert sip.frame_length(a[:-1]) is None
    with pytest.raises(SipError):
        sip.frame_length(b"BYE sip:x SIP/2.0\r\n\r\n")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_frame_length_reads_a_stream_buffer_as_it_reads_bytes(data):
    """The TCP reassembler and the standby's server pass their bytearray, uncopied: same answer."""
    stream = b"BYE sip:x SIP/2.0\r\nContent-Length: 2\r\n\r\nab" + data

    def outcome(buf):
        try:
            return sip.frame_length(buf)
        except SipError as e:
            return str(e)

    for buf in (data, stream):
        assert outcome(bytearray(buf)) == outcome(buf)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
@both
def test_random_input_only_raises_parse_errors(impl, data):
    try:
        m = impl.sip.parse(data)
    except ParseError:
        return
    for prop in ("call_id", "cseq", "from_", "to"):
        try:
            getattr(m, prop)
        except ParseError:
            pass


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=60).map(lambda b: bytes(x % 4 for x in b).translate(b"\r\nab" + bytes(252))))
def test_blank_line_search_is_the_regular_expression(data):
    """The two-find search for the end of the headers agrees with ``\\r?\\n\\r?\\n``."""
    import re

    m = re.compile(rb"\r?\n\r?\n").search(data, 0, sip.MAX_HEADER_BYTES + 4)
    assert sip._split_head(data) == (None if m is None else (m.start(), m.end()))


@both
@pytest.mark.parametrize(
    "raw",
    [
        "SIP/2.0 ²²² OK\r\n\r\n",
        "INVITE sip:a SIP/2.0\r\nContent-Length: ²\r\n\r\n",
        "INVITE sip:a SIP/2.0\r\nl: ١٢\r\n\r\n",
        "INVITE sip:a SIP/2.0\r\nCSeq: ² INVITE\r\n\r\n",
        "INVITE sip:a SIP/2.0\r\nCSeq: ١ INVITE\r\n\r\n",
        "INVITE sip:a SIP/2.0\r\nCSeq: 2147483648 INVITE\r\n\r\n",
    ],
)
def test_digits_outside_ascii_are_sip_errors_not_crashes(impl, raw):
    with pytest.raises(SipError):  # int("²") raised ValueError, which escaped the capture loop
        _ = impl.sip.parse(raw.encode()).cseq


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200), st.text(alphabet=st.characters(categories=["Nd", "No", "Nl"]), max_size=12))
@both
def test_unicode_messages_only_raise_parse_errors(impl, text, digits):
    """Text drawn from all of Unicode, and numbers written in digits of other scripts."""
    raw = f"INVITE sip:a SIP/2.0\r\nCall-ID: {text}\r\nCSeq: {digits} INVITE\r\nl: {digits}\r\n\r\n{text}"
    for data in (raw.encode(), text.encode()):
        try:
            m = impl.sip.parse(data)
            _ = (m.call_id, m.cseq, m.from_, m.to)
        except ParseError:
            pass


_piece = st.sampled_from(
    [
        b"\r\n",
        b"\n",
        b"\r",
        b" ",
        b"\t",
        b":",
        b";",
        b"=",
        b"\x00",
        b"\x1c",
        b"\x0b",
        b"Call-ID",
        b"i",
        b"l",
        b"Content-Length",
        b"content-length",
        b"CSeq",
        b"F",
        b"From",
        b"X Y",
        b"7",
        b"12",
        b"0",
        b"99999999",
        b"<sip:a@b>",
        b"tag=1",
        b"\xc3\xa9",
        b"\xff",
        b"SIP",
    ]
) | st.text(max_size=4).map(str.encode)  # any Unicode, as UTF-8: "²", "١٢", "\u2028", ...
_eol = st.sampled_from([b"\r\n", b"\n", b"\r\r\n"])
_name = st.sampled_from(
    [
        b"Call-ID",
        b"i",
        b"l",
        b"Content-Length",
        b"content-length",
        b"CSeq",
        b"F",
        b"From",
        b"V",
        b" Via ",
        b"X Y",
        b"X-\xc3\xa9",
        b"",
        b"To\t",
        b"\x1cSubject",
    ]
)
_value = st.lists(_piece.filter(lambda x: b"\n" not in x), max_size=6).map(b"".join)
_line = st.one_of(
    st.tuples(_name, st.sampled_from([b":", b": ", b" :\t"]), _value, _eol).map(b"".join),  # a header
    st.tuples(st.sampled_from([b" ", b"\t", b"  \t"]), _value, _eol).map(b"".join),  # folded
    st.tuples(st.lists(_piece, max_size=8).map(b"".join), _eol).map(b"".join),
)  # junk
_head = st.lists(_line, max_size=12).map(b"".join)
_good = st.lists(
    st.one_of(
        st.tuples(
            _name.filter(lambda n: n.strip() and b" " not in n.strip()), st.sampled_from([b":", b": "]), _value, _eol
        ).map(b"".join),
        st.tuples(st.sampled_from([b" ", b"\t"]), _value, _eol).map(b"".join),
    ),
    max_size=16,
).map(b"".join)
_start_piece = st.sampled_from(
    [
        b"SIP/2.0",
        b" ",
        b"  ",
        b"200",
        b"099",
        b"700",
        b"1x0",
        b"OK",
        b"invite",
        b"INVITE",
        b"sip:x",
        b"\r",
        b"\t",
        b"(",
        b"\xc3\xa9",
        b"\xff",
        b"\xb2",
        b"SIP/2.0X",
        b"",
        b"7",
    ]
)
_start = st.one_of(
    st.sampled_from(
        [
            b"INVITE sip:x SIP/2.0",
            b"SIP/2.0 200 OK",
            b"ACK sip:y SIP/2.0",
            b"SIP/2.0 180",
            b"BYE  SIP/2.0",
            b"SIP/2.0 2000 OK",
            b"\xc3\xa9 sip:x SIP/2.0",
            b"SIP/2.0 200 ",
            b"SIP/2.0 200\r",
            b"invite sip:x SIP/2.0\r\r",
            b" INVITE sip:x SIP/2.0",
            b"SIP/2.0  200 OK",
            b"SIP/2.0 \xb200 OK",
            b"INVITE sip:x SIP/2.0 x",
            b"INVITE sip:x y SIP/2.0",
            b"IN(VITE sip:x SIP/2.0",
            b"SIP/2.0",
            b"SIP/2.0 099 x",
            b"SIP/2.0 700 x",
            b"SIP/2.0 sip:x SIP/2.0",
            b"",
            b"SIP/2.0 200 OK \xc3\xa9",
        ]
    ),
    st.lists(_start_piece, max_size=7).map(b"".join),
)
_tail = st.sampled_from([b"", b"\r\n", b"\n", b"\r\nv=0\r\n", b"\r\nbody", b"v"])


def _outcome(parse, data):
    try:
        return parse(data)
    except ParseError as e:
        return type(e), str(e)


@settings(max_examples=2000, deadline=None)
@given(
    st.one_of(
        st.tuples(_start, st.sampled_from([b"\r\n", b"\n"]), st.one_of(_head, _good), _tail).map(b"".join),
        st.binary(max_size=300),
    )
)
def test_c_parser_agrees_with_the_python_twin(data):
    """Same message or same error, on SIP-shaped input (folding, compact forms, bad lines,
    control bytes, UTF-8 and bytes that are not) and on random bytes."""
    assert _outcome(C.sip.parse, data) == _outcome(PY.sip.parse, data)
