"""The SIP server: one asyncio event loop (epoll) in a thread, running a ``Uas`` on UDP and TCP
port 5060 of the VIP (IP_FREEBIND: it can start before the VIP is here).

Nothing a client does stops it:
- every socket operation's error is counted by operation and errno (``socket_errors``), never raised;
- each TCP connection has its own write buffer; above ``max_pending_bytes`` the server stops reading
  from it (a client that sends but never reads cannot make it buffer more), and a connection stalled
  like that for ``tcp_stalled_s``, or idle for ``tcp_idle_s``, is closed;
- at most ``max_connections`` TCP connections; more are closed at once and counted;
- UDP answers that the socket cannot take now are dropped and counted, not queued without end;
- an exception inside the loop's callbacks is counted by class (``faults``) and the loop goes on.
If the loop still ends, ``error`` says why and ``on_death`` is called (the standby exits so its
supervisor restarts it); ``beat`` is the loop's last tick, for a watchdog to see a frozen loop.

The RTP ports offered in answers are held by ``SocketPorts``: a socket bound on each RTP port (and
by default its RTCP port), never read (the capture engine records the RTP from the wire), so the kernel sends no ICMP
port unreachable to the phones. Those sockets are not in the event loop.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable

from appliance.standby.sip.ports import PortPool
from appliance.standby.sip.uas import Send, Uas
from capture.errors import ParseError
from capture.faults import Faults
from capture.sip import message as sip

log = logging.getLogger("shadowrec.sip")
IP_FREEBIND = 15
SO_RCVBUFFORCE = 33
UDP_RCVBUF = 4 << 20
MAX_MESSAGE = 65536 + 16384  # a TCP stream holding more than this without one whole message is closed


def errno_name(e: OSError) -> str:
    return errno.errorcode.get(e.errno or 0, type(e).__name__)


def _big_receive_buffer(s: socket.socket, size: int) -> None:
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)  # root: past net.core.rmem_max
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def _socket(kind: int, address: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
        s.bind((address, port))
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s


class SocketPorts(PortPool):
    """A ``PortPool`` holding a bound socket on each offered RTP port and (``rtcp``) its RTCP port. It
    takes at most ``max_sockets`` descriptors (default: two thirds of the process's limit), so that
    the recorder (a file per call), VRRP, the probes and the status files keep theirs: beyond, 503."""

    def __init__(
        self, address: str, lo: int = 16384, hi: int = 49150, max_sockets: int | None = None, rtcp: bool = True, **kw
    ):
        super().__init__(lo, hi, **kw)
        self.address = address
        self.rtcp = rtcp
        self.socks: dict[int, tuple[socket.socket, ...]] = {}
        if max_sockets is None:
            max_sockets = resource.getrlimit(resource.RLIMIT_NOFILE)[0] * 2 // 3
        self.max_sockets = max_sockets

    def _hold(self, port: int) -> str:
        each = 2 if self.rtcp else 1
        if each * (len(self.socks) + 1) > self.max_sockets:
            return "EMFILE"  # the share of descriptors the SIP server may take is taken
        held: list[socket.socket] = []
        try:
            for p in (port, port + 1)[:each]:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(s)
                s.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # the kernel's minimum: only held
                s.bind((self.address, p))
        except OSError as e:
            for s in held:
                s.close()
            return errno_name(e)
        self.socks[port] = tuple(held)
        return ""

    def _drop(self, port: int) -> None:
        for s in self.socks.pop(port, ()):
            s.close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: SipServer):
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self.paused = False

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        srv = self.server
        srv.counters["udp_messages"] += 1
        srv.send(srv.uas.on_message(data, addr[:2], srv.clock(), None))

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):
            self.server.socket_errors[f"udp.{errno_name(exc)}"] += 1

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False


class _Tcp(asyncio.Protocol):
    def __init__(self, server: SipServer):
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.peer: tuple = ("", 0)
        self.buf = bytearray()
        self.last = server.clock()
        self.stalled_since: float | None = None

    def connection_made(self, transport) -> None:
        srv = self.server
        if len(srv.conns) >= srv.max_connections:
            srv.counters["tcp_refused"] += 1
            transport.abort()
            return
        self.transport = transport
        self.peer = (transport.get_extra_info("peername") or ("", 0))[:2]
        sock = transport.get_extra_info("socket")
        if sock is not None:  # a 100 and a 200 back to back must not wait for the peer's delayed ACK (40 ms)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=srv.max_pending_bytes)
        srv.conns[id(self)] = self
        srv.counters["tcp_accepted"] += 1

    def data_received(self, data: bytes) -> None:
        srv = self.server
        self.last = srv.clock()
        self.buf += data
        while True:
            while self.buf[:2] == b"\r\n":  # keepalive CRLFs between messages (RFC 5626 §3.5.1)
                del self.buf[:2]
            try:
                n = sip.frame_length(self.buf)
            except ParseError:
                srv.counters["tcp_bad_stream"] += 1  # cannot find the next message: the stream is lost
                self.close()
                return
            if not n:
                break
            msg = bytes(self.buf[:n])
            del self.buf[:n]
            srv.counters["tcp_messages"] += 1
            srv.send(srv.uas.on_message(msg, self.peer, self.last, self))
            if self.transport is None:
                return
        if len(self.buf) > MAX_MESSAGE:
            srv.counters["tcp_oversize"] += 1
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        srv = self.server
        if self.transport is None:
            return
        self.transport = None
        srv.conns.pop(id(self), None)
        srv.uas.forget_connection(self)
        if isinstance(exc, OSError):
            srv.socket_errors[f"tcp.{errno_name(exc)}"] += 1

    def pause_writing(self) -> None:
        """The peer does not read its answers: stop reading its requests until it does."""
        if self.transport is not None:
            self.transport.pause_reading()
            self.stalled_since = self.server.clock()
            self.server.counters["tcp_stalled"] += 1

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()
            self.stalled_since = None
            self.last = self.server.clock()

    def write(self, data: bytes) -> bool:
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(data)
        return True

    def close(self) -> None:
        if self.transport is not None:
            t = self.transport
            self.connection_lost(None)
            t.abort()


class SipServer:
    """Runs ``uas`` on UDP and TCP ``port`` of ``bind`` (default: the UAS's address) in a thread."""

    def __init__(
        self,
        uas: Uas,
        port: int = 5060,
        bind: str | None = None,
        tcp_idle_s: float = 300.0,
        tcp_stalled_s: float = 10.0,
        max_connections: int = 256,
        max_pending_bytes: int = 1 << 20,
        clock: Callable[[], float] = time.monotonic,
        tick_s: float = 0.05,
    ):
        self.uas = uas
        self.clock = clock
        self.tcp_idle_s, self.tcp_stalled_s = tcp_idle_s, tcp_stalled_s
        self.max_connections, self.max_pending_bytes = max_connections, max_pending_bytes
        self.tick_s = tick_s
        self.counters: Counter[str] = Counter()
        self.socket_errors: Counter[str] = Counter()
        self.faults = Faults()  # exceptions in the loop's callbacks, by class
        self.conns: dict[int, _Tcp] = {}
        self.udp_proto: _Udp | None = None
        self.beat = clock()
        self.started_at = self.beat
        self.error: str | None = None
        self.on_death: Callable[[str], None] | None = None
        self.next_sweep = 0.0
        self.loop = asyncio.new_event_loop()
        self._stop = threading.Event()
        # bound here, so a bad address or a port in use fails the start, not the thread
        self.udp = _socket(socket.SOCK_DGRAM, bind or uas.address, port)
        _big_receive_buffer(self.udp, UDP_RCVBUF)  # a burst of INVITEs waits instead of being dropped
        self.tcp = _socket(socket.SOCK_STREAM, bind or uas.address, port)
        self.tcp.listen(512)  # connections queue until the loop runs
        self.port = self.udp.getsockname()[1]
        self.thread = threading.Thread(target=self._run, name="shadowrec-sip", daemon=True)

    def start(self) -> SipServer:
        self.thread.start()
        return self

    # the loop -------------------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.set_exception_handler(self._loop_error)
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as e:  # the loop itself failed: say so; the standby exits and is restarted
            self.error = f"{type(e).__name__}: {e}"
            log.error("SIP server stopped: %s", self.error, exc_info=e)
        finally:
            for c in list(self.conns.values()):
                c.close()
            self.uas.ports.release_all()
            try:
                self.loop.close()
            except Exception:
                pass
            self.udp.close()
            self.tcp.close()
        if self.error and self.on_death is not None:
            self.on_death(self.error)

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        _, self.udp_proto = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=self.udp)
        server = await loop.create_server(lambda: _Tcp(self), sock=self.tcp)
        try:
            while not self._stop.is_set():
                self._tick()
                await asyncio.sleep(self.tick_s)
        finally:
            server.close()

    def _tick(self) -> None:
        now = self.clock()
        self.beat = now
        try:
            self.send(self.uas.on_timer(now))
        except Exception as e:
            self.faults.add(e, None, "SIP timers")
        if now >= self.next_sweep:
            self.next_sweep = now + 1.0
            for c in list(self.conns.values()):
                if c.stalled_since is not None and now - c.stalled_since > self.tcp_stalled_s:
                    self.counters["tcp_closed_stalled"] += 1
                    c.close()
                elif now - c.last > self.tcp_idle_s:
                    self.counters["tcp_closed_idle"] += 1
                    c.close()

    def _loop_error(self, loop, context: dict) -> None:
        e = context.get("exception")
        if isinstance(e, OSError):
            self.socket_errors[f"loop.{errno_name(e)}"] += 1  # e.g. accept() out of descriptors
            log.warning("SIP server: %s: %s", context.get("message"), e)
        elif e is not None:
            self.faults.add(e, None, str(context.get("message", "")))
        else:
            log.warning("SIP server: %s", context.get("message"))

    def send(self, out: list[Send]) -> None:
        tcp: dict = {}  # one write per connection: the 100 and the 200 in one segment
        for s in out:
            if s.conn is None:
                p = self.udp_proto
                if p is None or p.transport is None or p.paused:
                    self.counters["udp_send_dropped"] += 1
                    continue
                p.transport.sendto(s.data, s.dst)  # an OSError goes to error_received: counted
            else:
                tcp.setdefault(s.conn, []).append(s.data)
        for conn, parts in tcp.items():
            if not conn.write(b"".join(parts)):
                self.counters["tcp_send_dropped"] += 1

    # control, from other threads ----------------------------------------------------------
    def call(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` in the loop's thread (VIP claimed or released)."""
        if not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(fn)
            except RuntimeError:  # the loop closed meanwhile
                pass

    def alive(self, max_beat_age_s: float = 5.0) -> str | None:
        """None while the loop runs and ticks; else what is wrong."""
        if self.error:
            return f"SIP server stopped: {self.error}"
        if not self.thread.is_alive():
            return "SIP server thread is not running" if self.thread.ident else None
        age = self.clock() - self.beat
        if age > max_beat_age_s:
            return f"SIP server loop frozen for {age:.1f} s"
        return None

    def status(self) -> dict:
        problem = self.alive()
        return {
            "state": "answering" if problem is None else "failed",
            "problem": problem,
            "heartbeat_age_s": round(self.clock() - self.beat, 3),
            "tcp_connections": len(self.conns),
            **self.uas.status(),
            **dict(self.counters),
            "socket_errors": dict(self.socket_errors),
            "loop_errors": dict(self.faults.counts),
        }

    def close(self) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(3)
        elif not self.thread.ident:  # never started
            self.udp.close()
            self.tcp.close()
            self.loop.close()
