"""Send the frames of a capture file out of an interface, keeping their timing (a small tcpreplay)."""

from __future__ import annotations

import mmap
import socket
import time

from capture import speedups


def replay(path: str, iface: str, speed: float = 1.0, topspeed: bool = False) -> dict:
    """Send every frame of ``path`` on ``iface``; with ``speed`` 1.0 at the original pace."""
    impl = speedups.default()
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    sent = errors = 0
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        idx = impl.Indexer(mm)
        t0 = base = None
        while True:
            offs, lens, tss, lts = idx.next_batch(65536)
            if not len(offs):
                break
            for o, n, ts in zip(offs.tolist(), lens.tolist(), tss.tolist()):
                if not topspeed:
                    if t0 is None:
                        t0, base = ts, time.perf_counter()
                    due = base + (ts - t0) / 1e9 / speed
                    while True:
                        d = due - time.perf_counter()
                        if d <= 0:
                            break
                        time.sleep(d if d > 0.002 else 0)
                try:
                    s.send(mm[o : o + n])
                    sent += 1
                except OSError:
                    errors += 1
        del idx
        mm.close()
    s.close()
    return {"sent": sent, "errors": errors}
