"""VRRPv3 (RFC 5798) for the recorder's virtual IP: packet, state, addresses, ARP, scheduler."""
