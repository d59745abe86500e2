"""Fuzz targets: one per parser, each ``one(data: bytes)`` that raises only on a bug.

A parser may refuse its input with a :class:`~capture.errors.ParseError`; anything else that
escapes, and any disagreement between a C kernel and its pure-Python twin, is a crash. Each
target also names its seeds (``seeds()``): real captures and SIP messages from ``tests/data``
(copied from ``../shared/samples``), and frames cut out of them. ``run.py`` drives them with
atheris (coverage-guided); ``tests/test_fuzz.py`` replays the crashes found, as regressions.
"""

from __future__ import annotations

import glob
import os
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator

from appliance.standby.sip.uas import Uas
from appliance.standby.vrrp import check as vrrp_check
from appliance.standby.vrrp import packet as vrrp_packet
from capture import speedups
from capture.errors import ParseError
from capture.options import Options
from capture.recorder import Recorder
from capture.sip import sdp
from capture.testing import synth
from capture.wire import icmp, ipfrag, rtp
from capture.wire.frame import PROTO_ICMP, PROTO_ICMPV6
from capture.wire.inet import checksum
from capture.wire.ipfrag import Defragmenter
from capture.wire.tcpstream import TcpReassembler

DATA = os.path.join(os.path.dirname(__file__), "..", "data")
C = speedups.load(pure=False)
PY = speedups.load(pure=True)
LINKTYPES = (0, 1, 12, 101, 113, 228, 229, 276, 147)


def _outcome(f: Callable, *args):
    try:
        return f(*args)
    except ParseError as e:
        return type(e), str(e)


def _agree(what: str, c, py) -> None:
    if c != py:
        raise AssertionError(f"{what}: the C kernel and the Python twin disagree:\nC:  {c!r}\nPY: {py!r}")


# --- the parsers ---------------------------------------------------------------------------------
def sip(data: bytes) -> None:
    """SIP messages, both twins, and every header accessor the call table uses."""
    c, py = _outcome(C.sip.parse, data), _outcome(PY.sip.parse, data)
    _agree("sip.parse", c, py)
    if isinstance(py, tuple):
        return
    for name in ("call_id", "cseq", "from_", "to", "is_request", "status", "method", "body"):
        got = _outcome(getattr, py, name)
        if name in ("from_", "to") and not isinstance(got, tuple):
            for p in ("tag", "x-refci", "x-nearend"):
                got.param(p)
    _outcome(py.header_all, "via")
    from capture.sip import message

    _outcome(message.frame_length, data)


def sdp_body(data: bytes) -> None:
    s = _outcome(sdp.parse, data)
    if isinstance(s, tuple):
        return
    a = s.audio()
    if a is not None:
        assert 0 <= a.port <= 65535 and all(0 <= p < 128 for p in a.fmts)
        for p in a.fmts:
            a.encoding(p)
        a.pt_of("telephone-event")


def frame(data: bytes) -> None:
    """The frame walker, both twins; the first byte picks the link type."""
    if not data:
        return
    lt, body = LINKTYPES[data[0] % len(LINKTYPES)], data[1:]
    _agree("packet.parse", _outcome(C.packet.parse, body, lt), _outcome(PY.packet.parse, body, lt))


def _index_all(impl, buf: bytes):
    try:
        idx = impl.Indexer(buf)
    except ParseError as e:
        return type(e), str(e)
    out = []
    while True:
        b = idx.next_batch(7)
        if not len(b[0]):
            break
        out.append([list(map(int, x)) for x in b])
    return out, idx.error, idx.records


def pcapfile(data: bytes) -> None:
    """The pcap/pcapng reader, both twins."""
    _agree("Indexer", _index_all(C, data), _index_all(PY, data))


def _chunks(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """Split ``data`` into (a, b, payload) records: 2 control bytes, a length byte, the payload."""
    i = 0
    while i + 3 <= len(data):
        a, b, n = data[i], data[i + 1], data[i + 2]
        yield a, b, data[i + 3 : i + 3 + n]
        i += 3 + n


def tcpstream(data: bytes) -> None:
    """TCP reassembly into SIP messages: segments with sequence jumps, SYN/FIN/RST, overlaps."""
    r = TcpReassembler()
    seq = {0: 1000, 1: 900000}
    for a, b, payload in _chunks(data):
        key = a & 1
        seq[key] = (seq[key] + (b - 128) * 7) & 0xFFFFFFFF  # back, forward, or a wrap
        for m in r.feed(("k", key), seq[key], a >> 1, payload, len(payload)):
            assert isinstance(m, bytes)
            _outcome(C.sip.parse, m)
        seq[key] = (seq[key] + len(payload)) & 0xFFFFFFFF
    r.expire(10**12)
    assert not r.streams


def defrag(data: bytes) -> None:
    """IP reassembly: fragments of two datagrams, any offsets, overlaps and repeats."""
    d = Defragmenter()
    for a, b, payload in _chunks(data):
        dg = d.add(a & 1, ((a >> 1) * 256 + b) * 8 % 70000, bool(b & 1), payload, 0)
        if dg is not None:
            _outcome(ipfrag.udp, dg)
            _outcome(ipfrag.tcp, dg)
    d.expire(10**12)
    assert not d.pending


def icmp_error(data: bytes) -> None:
    if data:
        _outcome(icmp.parse, 4 if data[0] & 1 else 6, data[1:])


def rtp_packet(data: bytes) -> None:
    h = _outcome(rtp.parse, data)
    if not isinstance(h, tuple):
        _outcome(rtp.parse_event, data[h.payload_offset : h.payload_offset + h.payload_length])


def vrrp(data: bytes) -> None:
    """The VRRP advert check; for inputs with an odd first byte the checksum is fixed up first,
    so that the fuzzer gets past it to what an advert says."""
    packet = vrrp_packet
    if not data:
        return
    src = ("198.18.0.2", "203.0.113.66")[data[0] >> 7]
    body = bytearray(data[1:])
    if data[0] & 1 and len(body) >= 8:
        body[6:8] = b"\0\0"
        n = 8 + 4 * body[3]
        c = checksum(packet._pseudo(src, packet.VRRP_GROUP, len(body[:n])) + bytes(body[:n]))
        body[6:8] = struct.pack("!H", c)
    adv = _outcome(packet.parse, bytes(body), src)
    if not isinstance(adv, tuple):
        _agree("vrrp round trip", packet.parse(packet.build(adv, src), src), adv)
    try:  # what decides whether it is believed raises nothing else either
        vrrp_check.check(bytes(body), src, packet.VRRP_GROUP, 255, _TRUST)
    except (ParseError, vrrp_check.OtherRouter):
        pass


_TRUST = vrrp_check.Trust.of(51, ["198.18.0.2"], ["198.18.0.3/24"], ["198.18.0.100/24"])


def uas(data: bytes) -> None:
    """The standby's SIP server logic fed messages (split at NUL bytes) and the passing of time:
    whatever arrives is answered or counted, never a fault of ours."""
    u = Uas("198.18.0.20")
    now = 0.0
    for i, msg in enumerate(data.split(b"\0")[:16]):
        for d, out, _ in u.on_message(msg, ("198.18.0.10", 5060), now):
            assert d == ("198.18.0.10", 5060) and out.startswith(b"SIP/2.0 ")
        now += 0.3 * (i % 4)
        u.on_timer(now)
    u.release(now)
    u.on_timer(now + 40.0)
    bugs = {k: v for k, v in u.faults.counts.items() if k.startswith("unhandled.")}
    assert not bugs, f"faults of ours: {bugs}"
    assert len(u.ports.in_use) == len(u.dialogs) == 0  # nothing is kept once released and ended


_OUT = tempfile.mkdtemp(prefix="shadowrec-fuzz-")


def codec_packets(data: bytes) -> None:
    """A stream of another codec decoded as after a call (capture.media.codecs, FFmpeg): the first
    byte picks the codec, then each packet is a length byte and its payload. FFmpeg's decoders
    run in this process here, so a crash in C is found, not isolated (the recorder isolates it)."""
    from capture.media.codecs import CODECS, decode_stream

    if not data:
        return
    names = sorted(CODECS)
    spec = CODECS[names[(data[0] & 0x7F) % len(names)]]
    params = {"octet-align": "1"} if data[0] & 0x80 else {}  # AMR's two payload modes
    packets, pos, k = [], 1, 0
    while pos < len(data) and k < 200:
        n = data[pos]
        packets.append(
            (k * 20_000_000, k & 0xFFFF, k * spec.clock // 50, 96 if n % 7 else 13, data[pos + 1 : pos + 1 + n])
        )
        pos, k = pos + 1 + n, k + 1
    res = decode_stream(packets, spec, 96, 0, 4 * spec.rate, params)
    assert len(res.samples) == 4 * spec.rate and res.samples.dtype.name == "int16"


def _codec_seeds() -> list[bytes]:
    """Each codec's packets from its reference encoder (tests/codec_refs.py), as codec_packets reads them."""
    import codec_refs as refs

    from capture.media.codecs import CODECS

    x8, x16 = refs.signal(8000, 0.5, silence=(0.2, 0.3)), refs.signal(16000, 0.5, silence=(0.2, 0.3))
    make = {"G722": lambda: refs.g722(x16), "OPUS": lambda: refs.opus(x16), "GSM": lambda: refs.gsm(x8),
            "AMR": lambda: refs.amr(x8, False), "AMR-octet": lambda: refs.amr(x8, True)}  # fmt: skip
    if refs.have_bcg729():
        make["G729"] = lambda: refs.g729(x8)
    names = sorted(CODECS)
    head = {n: names.index(n.split("-")[0]) | (0x80 if n.endswith("octet") else 0) for n in make}
    return [bytes([head[n]]) + b"".join(bytes([len(p)]) + p for p in f()) for n, f in make.items()]


def recorder(data: bytes) -> None:
    """The whole recorder fed a (mutated) capture file; the first byte picks the twin."""
    if not data:
        return
    impl = C if data[0] & 1 else PY
    cap = os.path.join(_OUT, "in.pcap")
    with open(cap, "wb") as f:
        f.write(data[1:])
    out = os.path.join(_OUT, "out")
    try:
        rec = Recorder(Options(out_dir=out, rtp_timeout_s=5), impl)
        rec.record_file(cap)
        summary = rec.finish()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    bugs = {k: v for k, v in summary["errors"].items() if k.startswith("unhandled.")}
    assert not bugs, f"faults of ours: {bugs}"


# --- seeds ---------------------------------------------------------------------------------------
def _sip_seeds() -> list[bytes]:
    out = []
    for p in sorted(glob.glob(os.path.join(DATA, "*.txt"))):
        with open(p, "rb") as f:
            out.append(f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    return out + list(synth.HOSTILE_SIP[:-1])


def _captures() -> list[bytes]:
    """The real captures in tests/data that are small enough to mutate, and a synthetic BiB call."""
    out = []
    for p in sorted(glob.glob(os.path.join(DATA, "*.pcap*"))):
        if os.path.getsize(p) <= 256 * 1024:
            with open(p, "rb") as f:
                out.append(f.read())
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "bib.pcap")
        synth.generate(p, synth.SynthSpec(calls=1, duration_s=0.3, transport="udp", dtmf="1", hostile=9))
        with open(p, "rb") as f:
            out.append(f.read())
        from capture.testing import tunnels

        w = os.path.join(d, "erspan.pcap")  # the same call from a remote mirror
        tunnels.wrap_capture(p, w, "erspan2")
        with open(w, "rb") as f:
            out.append(f.read())
    return out


def _frames(limit: int = 200) -> list[tuple[int, bytes]]:
    out = []
    for cap in _captures():
        idx = PY.Indexer(cap)
        b = idx.next_batch(limit)
        for off, n, _ts, lt in zip(*b, strict=True):
            out.append((int(lt), cap[int(off) : int(off) + int(n)]))
    return out


def _frame_seeds() -> list[bytes]:
    """The seed captures' frames, and some of them as each remote mirror's tunnel carries them."""
    from capture.testing import tunnels

    frames = _frames()
    eth = [f for lt, f in frames if lt == 1][:20]
    wrapped = [(1, tunnels.wrap(f, kind, v6=k % 2 == 1)) for k, f in enumerate(eth) for kind in tunnels.KINDS]
    return [bytes([LINKTYPES.index(lt) if lt in LINKTYPES else 1]) + f for lt, f in frames + wrapped]


def _payloads(icmp_only: bool = False) -> list[bytes]:
    """The non-empty UDP/TCP payloads of the seed frames, or their ICMP messages."""
    out = []
    for lt, f in _frames(2000):
        try:
            fr = PY.packet.parse(f, lt)
        except ParseError:
            continue
        if icmp_only and fr.proto in (PROTO_ICMP, PROTO_ICMPV6):
            out.append(bytes([fr.ip_version & 1]) + f[fr.l4_off : fr.l4_off + fr.l4_len])
        elif not icmp_only and fr.payload_len:
            out.append(f[fr.payload_off : fr.payload_off + fr.payload_len])
    return out


def _sdp_seeds() -> list[bytes]:
    srtp = (  # SDES keys (RFC 4568), as CUCM sends them for SRTP
        b"v=0\r\no=CiscoSystemsCCM-SIP 1 1 IN IP4 198.18.0.10\r\ns=SIP Call\r\nc=IN IP4 198.18.1.1\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=sendonly\r\n"
        b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd|2^31|1:1\r\n"
        b"a=crypto:2 AEAD_AES_256_GCM inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKis=\r\n"
    )
    return [m.split(b"\r\n\r\n", 1)[1] for m in _sip_seeds() if b"\r\n\r\nv=" in m] + [srtp]


def _chunked(msgs: list[bytes]) -> list[bytes]:
    out = []
    for m in msgs:
        recs = b"".join(bytes([2 * (i % 3), 128, len(m[i : i + 200])]) + m[i : i + 200] for i in range(0, len(m), 200))
        out.append(bytes([3, 128, 0]) + recs)  # a SYN, then the message in segments
    return out


def _vrrp_seeds() -> list[bytes]:
    packet = vrrp_packet
    adv = packet.Advert(51, 100, 100, ("198.18.0.100",))
    return [b"\x01" + packet.build(adv, "198.18.0.2"), b"\x00" + packet.build(adv, "198.18.0.2")]


TARGETS: dict[str, tuple[Callable[[bytes], None], Callable[[], list[bytes]]]] = {
    "sip": (sip, _sip_seeds),
    "sdp": (sdp_body, _sdp_seeds),
    "frame": (frame, _frame_seeds),
    "pcapfile": (pcapfile, _captures),
    "tcpstream": (tcpstream, lambda: _chunked(_sip_seeds())),
    "defrag": (defrag, lambda: _chunked([p[:600] for p in _payloads()[:: max(1, len(_payloads()) // 20)]])),
    "icmp": (icmp_error, lambda: _payloads(icmp_only=True)[:20]),
    "rtp": (rtp_packet, lambda: [p for p in _payloads() if p[:1] == b"\x80"][:20]),
    "vrrp": (vrrp, _vrrp_seeds),
    "uas": (uas, lambda: [b"\0".join(_sip_seeds()[:4])] + _sip_seeds()),
    "codecs": (codec_packets, _codec_seeds),
    "recorder": (recorder, lambda: [b"\x01" + c for c in _captures()] + [b"\x00" + c for c in _captures()[:1]]),
}
