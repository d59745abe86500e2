import pytest
from conftest import sip_sample

from capture.errors import SdpError
from capture.sip import message as sip
from capture.sip import sdp


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
        b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abc\r\na=recvonly\r\n"
    )
    m = sdp.parse(body).audio()
    assert m.crypto and m.fmts == (8, 0, 18, 101) and m.encoding(18) == ("G729", 8000) and m.direction == "recvonly"


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
    ],
)
def test_bad_sdp(body):
    with pytest.raises(SdpError):
        sdp.parse(body)
