"""The standby's SIP recording server (UAS): what shadowrec answers while it owns the VIP.

- ``uas``: the logic, no I/O: dialogs, 2xx retransmission, expiry, what to answer;
- ``ports``: the RTP ports offered in answers (a pool; the server holds a socket on each);
- ``peers``: who is answered at all (the allowlist, configured or learned from the SPAN port);
- ``server``: the one asyncio event loop that runs the UAS on UDP and TCP sockets.
"""
