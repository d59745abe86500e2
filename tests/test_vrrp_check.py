"""Which VRRP adverts are believed (appliance/standby/vrrp/check.py): each forgery seen in the field is
refused before it reaches the state machine, with its reason."""

import pytest

from appliance.standby.vrrp import check, packet
from capture.errors import ParseError

TRUST = check.Trust.of(20, ["198.18.0.2"], ["198.18.0.3/24"], ["198.18.0.20/24"])


def advert(src="198.18.0.2", vrid=20, priority=100, interval=100, addresses=("198.18.0.20",)):
    return packet.build(packet.Advert(vrid, priority, interval, addresses), src)


def test_the_primarys_advert_is_believed():
    a = check.check(advert(), "198.18.0.2", packet.VRRP_GROUP, 255, TRUST)
    assert (a.priority, a.max_adver_int_cs, a.addresses) == (100, 100, ("198.18.0.20",))


@pytest.mark.parametrize(
    "src,kw,ttl,reason",
    [
        ("203.0.113.66", {}, 255, "not_peer"),  # off-subnet, not a peer (the field report: priority 255, 40.95 s)
        ("198.18.0.9", {}, 255, "not_peer"),  # on the subnet, not the primary
        ("198.18.0.2", {"addresses": ("198.18.0.99",)}, 255, "addresses"),
        ("198.18.0.2", {"addresses": ("198.18.0.20", "198.18.0.21")}, 255, "addresses"),
        ("198.18.0.2", {"addresses": ()}, 255, "addresses"),
        ("198.18.0.2", {}, 64, "ttl"),  # routed here
    ],
)
def test_forgeries_are_rejected_with_their_reason(src, kw, ttl, reason):
    with pytest.raises(check.AdvertRejected) as e:
        check.check(advert(src, priority=255, interval=4095, **kw), src, packet.VRRP_GROUP, ttl, TRUST)
    assert e.value.reason == reason and isinstance(e.value, ParseError)


def test_a_peer_off_the_service_subnet_is_rejected():
    trust = check.Trust.of(20, ["203.0.113.66"], ["198.18.0.3/24"], ["198.18.0.20/24"])
    with pytest.raises(check.AdvertRejected) as e:
        check.check(advert("203.0.113.66"), "203.0.113.66", packet.VRRP_GROUP, 255, trust)
    assert e.value.reason == "off_subnet"


def test_another_routers_advert_is_ignored_and_a_bad_checksum_is_a_parse_error():
    with pytest.raises(check.OtherRouter):
        check.check(advert(vrid=21), "198.18.0.2", packet.VRRP_GROUP, 255, TRUST)
    with pytest.raises(packet.VrrpError):
        check.check(advert(), "198.18.0.9", packet.VRRP_GROUP, 255, TRUST)  # checksum over another source
