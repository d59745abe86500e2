"""A TPACKET_V3 receive ring on an AF_PACKET socket (Linux), set up from Python.

Only the per-block walk is hot (``index_block``: ext/ring.pyx or its twin); socket options,
the mmap and poll() are done here once. Blocks are handed out in ring order and must be
given back with ``release`` once their packets are processed.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import select
import socket
import struct
import time

from capture.errors import ConfigError, InterfaceError

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_MR_PROMISC = 1
TPACKET_V3 = 2
ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
TP_STATUS_USER = 1
POLL_ERRORS = select.POLLERR | select.POLLHUP | select.POLLNVAL
log = logging.getLogger("shadowrec")


class Ring:
    """Receive ring on ``ifname``: ``block_size`` × ``blocks`` bytes (32 MiB or more for bursts)."""

    def __init__(
        self,
        ifname: str,
        block_size: int = 1 << 20,
        blocks: int = 64,
        timeout_ms: int = 20,
        bpf: list | None = None,
        promisc: bool = True,
    ):
        if block_size % mmap.PAGESIZE or block_size < 65536:
            raise ConfigError(f"ring block size {block_size} must be a multiple of the page size and >= 64 KiB")
        self.block_size = block_size
        self.blocks = blocks
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            if bpf is not None:
                self._bpf = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *ins) for ins in bpf))
                prog = struct.pack("HL", len(bpf), ctypes.addressof(self._bpf))
                self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)
            self.sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            frame = 2048
            req = struct.pack("IIIIIII", block_size, blocks, frame, block_size * blocks // frame, timeout_ms, 0, 0)
            self.sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
            self.mm = mmap.mmap(
                self.sock.fileno(), block_size * blocks, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
            )
            self.ifname = ifname
            self.ifindex = socket.if_nametoindex(ifname)
            if promisc:  # undone by the kernel when the socket closes
                self.sock.setsockopt(
                    SOL_PACKET, PACKET_ADD_MEMBERSHIP, struct.pack("iHH8s", self.ifindex, PACKET_MR_PROMISC, 0, b"")
                )
            self.sock.bind((ifname, ETH_P_ALL))
        except OSError as e:
            self.sock.close()
            raise ConfigError(f"cannot open a capture ring on {ifname}: {e}") from e
        self.poller = select.poll()
        self.poller.register(self.sock.fileno(), select.POLLIN | select.POLLERR)
        self.current = 0
        self.packets = 0
        self.drops = 0
        self.link_errors = 0

    def _handed_over(self, off: int) -> bool:
        """Whether the block at ``off`` is the user's (its block_status has TP_STATUS_USER)."""
        return bool(struct.unpack_from("=I", self.mm, off + 8)[0] & TP_STATUS_USER)

    def next_block(self, timeout_ms: int):
        """The offset of the next block the kernel handed over, or None after ``timeout_ms``."""
        off = self.current * self.block_size
        if not self._handed_over(off):
            if not timeout_ms:
                return None
            for _, ev in self.poller.poll(timeout_ms):  # releases the GIL while the link is idle
                self.check_poll(ev, timeout_ms)
            if not self._handed_over(off):
                return None
        return off

    def filled_ahead(self, k: int) -> bool:
        """Whether the kernel has filled the block ``k`` places after the current one (and so
        every block before it: it fills them in order)."""
        return self._handed_over((self.current + k) % self.blocks * self.block_size)

    def check_poll(self, events: int, timeout_ms: int) -> None:
        """Handle what poll() said of this ring's socket: an error flag, if any, is dealt with."""
        if events & POLL_ERRORS:
            self._socket_error(timeout_ms)

    def _socket_error(self, timeout_ms: int) -> None:
        """The kernel flagged the socket (the link went down, or the interface away).

        Reading SO_ERROR clears the flag, so poll() blocks again instead of spinning. A link
        that went down comes back by itself (the kernel re-hooks the socket when it is up); an
        interface that is gone, or a different one under the same name, ends the capture.
        """
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        try:
            index = socket.if_nametoindex(self.ifname)
        except OSError:
            index = None
        if index != self.ifindex:
            raise InterfaceError(
                f"{self.ifname}: the capture interface is gone" + (f" ({os.strerror(err)})" if err else "")
            )
        self.link_errors += 1
        if self.link_errors <= 20:
            log.warning("%s: capture socket error: %s", self.ifname, os.strerror(err) if err else "hang-up")
        if not err:
            time.sleep(timeout_ms / 1000)  # a hang-up with no error: do not spin

    def release(self, off: int) -> None:
        self.mm[off + 8 : off + 12] = b"\0\0\0\0"  # TP_STATUS_KERNEL
        self.current = (self.current + 1) % self.blocks

    def stats(self) -> tuple:
        """(packets, drops) seen by the kernel since the ring opened (tpacket_stats_v3)."""
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
        p, d, _freeze = struct.unpack("III", raw)  # reading resets the kernel's counters
        self.packets += p
        self.drops += d
        return self.packets, self.drops

    def close(self) -> None:
        try:
            self.mm.close()
        except BufferError:
            pass
        self.sock.close()
