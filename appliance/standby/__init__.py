"""The standby: VRRPv3 as the primary's backup, health probes of the primary, the SIP server
that answers recording calls while shadowrec holds the VIP, and the takeover composing them."""
