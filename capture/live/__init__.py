"""Live capture: the TPACKET_V3 ring, the SPAN interface, the filters, the capture workers and
their status files."""
