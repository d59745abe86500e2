import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capture import sip
from capture.errors import ParseError, SipError, Truncated
from conftest import sip_sample


def test_cucm_invite_nearend():
    m = sip.parse(sip_sample("bib_01_cucm10.5_udp_INVITE_nearend_delayed_offer.txt"))
    assert m.method == "INVITE" and m.cseq == (101, "INVITE") and m.body == b""
    assert m.call_id == "abbb8e00-4291f775-204c-5a20300e@10.48.32.90"
    fr = m.from_
    assert fr.uri_param("x-nearend") == "" and fr.uri_param("x-refci") == "38960750"
    assert fr.uri_param("x-nearenddevice") == "sep001795bdd16b" and fr.param("tag").startswith("73601~")
    assert m.header_all("supported") == ["timer,resource-priority,replaces", "X-cisco-srtp-fallback", "Geolocation"]
    assert m.to.param("tag") is None and m.branch == "z9hG4bK204d520fedb3"


def test_recorder_200_ok_body_framed_by_content_length():
    m = sip.parse(sip_sample("bib_02_recorder_200OK_sdp_offer_to_nearend_INVITE.txt"))
    assert m.status == 200 and m.content_type == "application/sdp"
    assert m.body.startswith(b"v=0") and len(m.body) == 135 and m.body.endswith(b"PCMU/8000\r\n")


def test_bye_with_run_together_headers_survives():
    m = sip.parse(sip_sample("bib_05_cucm10.5_udp_BYE_farend_reason_q850_cause47.txt"))
    assert m.method == "BYE" and m.cseq == (102, "BYE")


def test_compact_forms_case_and_folding():
    raw = (b"OPTIONS sip:rec@198.18.0.20 SIP/2.0\r\nv: SIP/2.0/UDP 198.18.0.10;branch=z9hG4bKx\r\n"
           b"f: <sip:a@198.18.0.10>;tag=1\r\nT: <sip:rec@198.18.0.20>\r\ni: abc@x\r\nCSEQ: 7 options\r\n"
           b"Subject: first\r\n  continued\r\nl: 0\r\n\r\n")
    m = sip.parse(raw)
    assert m.call_id == "abc@x" and m.cseq == (7, "OPTIONS") and m.header("SUBJECT") == "first continued"
    assert m.header("via").startswith("SIP/2.0/UDP") and m.from_.param("tag") == "1"


@pytest.mark.parametrize("raw,exc", [
    (b"", Truncated),
    (b"INVITE sip:x SIP/2.0\r\nContent-Length: 99999999\r\n\r\n", SipError),
    (b"INVITE sip:x SIP/2.0\r\nContent-Length: 10\r\n\r\nabc", Truncated),
    (b"HELLO\r\n\r\n", SipError),
    (b"SIP/2.0 99x OK\r\n\r\n", SipError),
    (b"INVITE sip:x SIP/2.0\r\nno colon here\r\n\r\n", SipError),
    (b"\xff\xfe SIP/2.0\r\n\r\n", SipError),
])
def test_bad_messages_raise_clear_errors(raw, exc):
    with pytest.raises(exc):
        sip.parse(raw)


def test_frame_length_for_tcp():
    a = b"BYE sip:x SIP/2.0\r\nCall-ID: 1\r\nContent-Length: 3\r\n\r\nabc"
    assert sip.frame_length(a + b"INV") == len(a)
    assert sip.frame_length(a[:-1]) is None
    with pytest.raises(SipError):
        sip.frame_length(b"BYE sip:x SIP/2.0\r\n\r\n")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_random_input_only_raises_parse_errors(data):
    try:
        m = sip.parse(data)
    except ParseError:
        return
    for prop in ("call_id", "cseq", "from_", "to"):
        try:
            getattr(m, prop)
        except ParseError:
            pass
