"""Benchmark: SIPp as CUCM against `shadowrec run` holding the VIP, up to N concurrent BiB calls.

Two SIPp processes (x-nearend, x-farend dialogs) start --rate calls per second each until --calls
are up at once, hold them, stream RTP to the answered ports at the start and again just before the
BYE (--rtp seconds each time), and hang up. Prints the report of appliance.lab.sipp.run: calls
answered and failed, peak concurrent dialogs and the descriptors shadowrec held then, INVITE-to-200
times from a capture on CUCM's interface, CPU seconds of shadowrec and of SIPp (the baseline: the
load generator's own cost), datagrams that met a closed port, and the recordings.

    python bench/sipp_load.py --calls 5000 --rate 50 --transport udp   (root; Debian's sip-tester)
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from appliance.lab import sipp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=50.0, help="new BiB calls per second")
    ap.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    ap.add_argument("--hold", type=float, help="seconds each call stays up (default: the ramp + 10 s)")
    ap.add_argument("--rtp", type=float, default=1.0, help="seconds of RTP at each end of a call")
    ap.add_argument("--no-rtcp-sockets", action="store_true", help="shadowrec holds RTP ports only (half the fds)")
    ap.add_argument("--work", default="/tmp/shadowrec-sipp-load")
    ap.add_argument("--json", help="also write the report here")
    args = ap.parse_args()
    r = sipp.run(args.work, args.calls, args.rate, args.transport, args.hold, args.rtp, not args.no_rtcp_sockets)
    print(json.dumps(r, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)


if __name__ == "__main__":
    main()
