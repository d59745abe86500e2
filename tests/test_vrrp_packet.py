import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.standby.vrrp import packet
from capture.errors import ParseError


def test_round_trip_and_checksum():
    adv = packet.Advert(vrid=20, priority=100, max_adver_int_cs=100, addresses=("198.18.0.20",))
    raw = packet.build(adv, "198.18.0.2")
    assert raw[0] == 0x31 and len(raw) == 12
    assert packet.parse(raw, "198.18.0.2") == adv
    with pytest.raises(packet.VrrpError, match="checksum"):
        packet.parse(raw, "198.18.0.9")  # the pseudo-header counts: another source fails


@pytest.mark.parametrize(
    "raw,msg",
    [
        (b"\x31\x14", "needs 8"),
        (b"\x21\x14\x64\x00\x00\x64\x00\x00", "version 2"),
        (b"\x32\x14\x64\x00\x00\x64\x00\x00", "type 2"),
        (b"\x31\x14\x64\x03\x00\x64\x00\x00", "lists 3"),
    ],
)
def test_bad_messages(raw, msg):
    with pytest.raises(ParseError, match=msg):
        packet.parse(raw, "198.18.0.2")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_random_bytes_only_raise_parse_errors(raw):
    try:
        packet.parse(raw, "198.18.0.2")
    except ParseError:
        pass
