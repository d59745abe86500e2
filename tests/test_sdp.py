import base64

import pytest
from conftest import sip_sample
from hypothesis import given, settings
from hypothesis import strategies as st

from capture.errors import SdpError
from capture.sip import message as sip
from capture.sip import sdp

KEY30 = base64.b64encode(bytes(range(30)))


def test_recorder_offer():
    m = sdp.parse(sip.parse(sip_sample("bib_02_recorder_200OK_sdp_offer_to_nearend_INVITE.txt")).body).audio()
    assert (m.address, m.port, m.fmts, m.encoding(0)) == ("10.48.32.170", 6000, (0,), ("PCMU", 8000))


def test_cucm_answer_sendonly_phone_and_placeholder_port():
    m = sdp.parse(sip.parse(sip_sample("bib_03_cucm10.5_udp_ACK_sdp_answer_sendonly_nearend.txt")).body).audio()
    assert m.direction == "sendonly" and m.address == "10.48.32.33" and m.port == 4000
    assert m.pt_of("telephone-event") == 101 and m.pt_of("PCMU") == 0


def test_srtp_offer_with_several_codecs():
    body = (
        b"v=0\r\no=- 1 1 IN IP4 198.18.0.20\r\ns=-\r\nc=IN IP4 198.18.0.20\r\nt=0 0\r\n"
        b"m=audio 24000 RTP/SAVP 8 0 18 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY30 + b"|2^31|1:1\r\n"
        b"a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:" + KEY30 + b"\r\na=recvonly\r\n"
        b"a=crypto:3 F8_128_HMAC_SHA1_80 inline:" + KEY30 + b"\r\n"
    )
    m = sdp.parse(body).audio()
    assert m.secure and m.fmts == (8, 0, 18, 101) and m.encoding(18) == ("G729", 8000) and m.direction == "recvonly"
    key = base64.b64decode(KEY30)
    assert m.crypto == (
        sdp.Crypto(1, "AES_CM_128_HMAC_SHA1_80", key, True),
        sdp.Crypto(2, "AES_CM_128_HMAC_SHA1_32", key, False),
        sdp.Crypto(3, "F8_128_HMAC_SHA1_80", b"", False),  # a suite we cannot decrypt: no key
    )


@pytest.mark.parametrize(
    "line, match",
    [
        (b"a=crypto:1 AES_CM_128_HMAC_SHA1_80", "bad crypto attribute"),
        (b"a=crypto:x AES_CM_128_HMAC_SHA1_80 inline:" + KEY30, "crypto tag"),
        ("a=crypto:١ AES_CM_128_HMAC_SHA1_80 inline:".encode() + KEY30, "crypto tag"),
        (b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 uri:http://x", "not inline"),
        (b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abc", "not base64"),
        (b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(bytes(20)), "needs 30 bytes"),
        (b"a=crypto:1 AEAD_AES_256_GCM inline:" + KEY30, "needs 44 bytes"),
        ("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:ＡＢ".encode(), "not base64"),
    ],
)
def test_bad_crypto_lines(line, match):
    with pytest.raises(SdpError, match=match):
        sdp.parse(b"v=0\r\nc=IN IP4 198.18.0.1\r\nm=audio 4000 RTP/SAVP 0\r\n" + line + b"\r\n")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"x=1",
        b"v=0\nm=audio notaport RTP/AVP 0",
        b"v=0\nc=IN IP4",
        b"v=0\nm=audio 70000 RTP/AVP 0",
        b"v=0\nm=audio 1 RTP/AVP 0\na=rtpmap:x",
        b"\xff\xfe",
        "v=0\nm=audio ² RTP/AVP 0".encode(),
        "v=0\nm=audio 1 RTP/AVP 0\na=rtpmap:١ PCMU/8000".encode(),
        "v=0\nm=audio 1 RTP/AVP 0\na=rtpmap:0 PCMU/٨٠٠٠".encode(),
        b"v=0\nm=audio 1 RTP/AVP 0\na=rtpmap:0 PCMU/99999999999999",
    ],
)
def test_bad_sdp(body):
    with pytest.raises(SdpError):
        sdp.parse(body)


def test_unicode_payload_types_are_skipped():
    m = sdp.parse("v=0\nc=IN IP4 198.18.0.1\nm=audio 4000 RTP/AVP 0 ² ١٢ 8 300".encode()).audio()
    assert m.fmts == (0, 8)  # int("²") raised ValueError, which escaped the capture loop


_line = st.tuples(
    st.sampled_from("vocmast") | st.text(max_size=1), st.sampled_from(["=", ""]), st.text(max_size=40)
).map("".join)


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(
        _line
        | st.sampled_from(["m=audio 4000 RTP/AVP 0", "c=IN IP4 198.18.0.1", "a=rtpmap:0 PCMU/8000"])
        | st.tuples(
            st.sampled_from(["m=audio ", "a=rtpmap:", "m=audio 4000 RTP/AVP ", "a=rtpmap:0 PCMU/"]),
            st.text(alphabet=st.characters(categories=["Nd", "No", "Nl", "Zs"]), max_size=6),
        ).map("".join),
        max_size=8,
    ).map("\r\n".join)
)
def test_unicode_bodies_only_raise_sdp_errors(text):
    try:
        s = sdp.parse(text.encode())
    except SdpError:
        return
    for m in s.media:
        assert all(0 <= p < 128 for p in m.fmts) and 0 <= m.port <= 65535
