"""Codecs other than G.711, decoded after the call from its kept packets, through FFmpeg (PyAV):
G.722, G.729 (Annex B), Opus, GSM 06.10, AMR-NB (RFC 4867, both payload modes: ``amr``) and iLBC
(RFC 3952: 20 or 30 ms frames, from the SDP's ``mode`` or else the payloads' sizes). A
narrowband call's WAV stays 8 kHz; a call with a wideband codec (G.722, Opus) is stored at
16 kHz, both channels at that rate (a narrowband channel beside it is upsampled with it).

Each stream is placed as the engine places G.711: its first packet anchors its RTP timestamps to
the capture clock (sample 0 is the call's start), so the two channels stay aligned to wall time.
Packets are decoded in sequence order (duplicates once); a lost packet, comfort noise (RFC 3389,
and G.729 Annex B's SID frames) and the silence of VAD between packets are silence in place.
Pure I/O-free logic: ``decode_stream`` takes the packets and gives samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from capture.errors import ParseError
from capture.media import amr

NS = 1_000_000_000


@dataclass(frozen=True)
class CodecSpec:
    name: str  # as SDP names it (upper case)
    decoder: str  # FFmpeg's decoder
    rate: int  # samples per second it is stored at
    clock: int  # RTP timestamp rate
    frame_bytes: int = 0  # split a payload into frames this long (G.729: 10; 0: the payload whole)
    sid_bytes: int = 0  # a trailing comfort-noise frame this long is skipped (G.729 Annex B: 2)
    decode_rate: int = 0  # what the decoder gives, if not ``rate`` (libopus: always 48 kHz)
    bit_rate: int = 0  # told to the decoder (FFmpeg's iLBC takes its frame mode from it)

    @property
    def out_rate(self) -> int:
        return self.decode_rate or self.rate


CODECS = {
    "G722": CodecSpec("G722", "g722", 16000, 8000),
    "G729": CodecSpec("G729", "g729", 8000, 8000, frame_bytes=10, sid_bytes=2),
    "OPUS": CodecSpec("OPUS", "libopus", 16000, 48000, decode_rate=48000),
    "GSM": CodecSpec("GSM", "gsm", 8000, 8000),
    "AMR": CodecSpec("AMR", "amrnb", 8000, 8000),
    "ILBC": CodecSpec("ILBC", "ilbc", 8000, 8000, frame_bytes=50, bit_rate=13333),
}
ILBC_MODES = {"20": (38, 15200), "30": (50, 13333)}  # RFC 3951: frame bytes and bit rate per mode


def ilbc_spec(spec: CodecSpec, params: dict[str, str], sizes: list[int]) -> CodecSpec:
    """iLBC's frame length: the SDP's ``mode`` (RFC 3952), else what the payloads' sizes say
    (whole 38-byte frames and not whole 50-byte ones: 20 ms), else 30 ms (RFC 3952's default)."""
    mode = params.get("mode", "")
    if mode not in ILBC_MODES:
        mode = "20" if sizes and all(n % 38 == 0 and n % 50 for n in sizes) else "30"
    frame_bytes, bit_rate = ILBC_MODES[mode]
    return replace(spec, frame_bytes=frame_bytes, bit_rate=bit_rate)


def frames_of(spec: CodecSpec, payload: bytes, params: dict[str, str]) -> tuple[list[bytes], int]:
    """The decoder's packets in one RTP payload, and how many comfort-noise frames it held."""
    if spec.name == "AMR":  # RFC 4867: octet-aligned if the SDP says so, else bandwidth-efficient
        frames = amr.parse(payload, params.get("octet-align") == "1")
        return [f.storage for f in frames if f.speech], sum(1 for f in frames if f.ft == 8)
    if spec.name == "ILBC" and (not payload or len(payload) % spec.frame_bytes):
        raise ParseError(f"iLBC payload of {len(payload)} bytes: not whole {spec.frame_bytes}-byte frames")
    if spec.frame_bytes:
        whole = len(payload) // spec.frame_bytes * spec.frame_bytes
        sid = 1 if spec.sid_bytes and len(payload) - whole == spec.sid_bytes else 0
        return [payload[i : i + spec.frame_bytes] for i in range(0, whole, spec.frame_bytes)], sid
    return [payload], 0


@dataclass
class StreamDecode:
    """What decoding one stream came to."""

    packets: int = 0
    duplicates: int = 0
    comfort_noise: int = 0  # CN packets and SID frames: silence
    errors: int = 0  # packets the decoder refused: silence
    first_at_sample: int | None = None
    samples: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int16))

    def to_dict(self) -> dict:
        return {"packets": self.packets, "duplicates": self.duplicates, "comfort_noise": self.comfort_noise,
                "errors": self.errors}  # fmt: skip


def _decoder(spec: CodecSpec):
    import av
    from av.audio.codeccontext import AudioCodecContext

    ctx = av.CodecContext.create(spec.decoder, "r")
    assert isinstance(ctx, AudioCodecContext)
    ctx.sample_rate = spec.out_rate
    ctx.layout = "mono"
    if spec.bit_rate:
        ctx.bit_rate = spec.bit_rate
    return ctx


def _pcm(frames) -> np.ndarray:
    out = [f.to_ndarray().reshape(-1) for f in frames]
    if not out:
        return np.zeros(0, dtype=np.int16)
    a = np.concatenate(out)
    if a.dtype != np.int16:  # a float decoder (Opus): to 16-bit
        a = np.clip(np.round(a * 32768.0), -32768, 32767).astype(np.int16)
    return a


def decode_stream(
    packets: list[tuple[int, int, int, int, bytes]],
    spec: CodecSpec,
    audio_pt: int,
    start_ns: int,
    length: int,
    params: dict[str, str] | None = None,
) -> StreamDecode:
    """``packets``: (arrival ns, sequence number, RTP timestamp, payload type, payload) as they
    came. Returns the stream's samples at ``spec.rate``, ``length`` long, placed by timestamp."""
    if spec.decode_rate:  # placed at the decoder's rate, then resampled whole
        res = decode_stream(packets, replace(spec, rate=spec.decode_rate, decode_rate=0), audio_pt, start_ns,
                            length * spec.decode_rate // spec.rate, params)  # fmt: skip
        a = resample(res.samples, spec.decode_rate, spec.rate)
        res.samples = np.pad(a, (0, max(0, length - len(a))))[:length]
        if res.first_at_sample is not None:
            res.first_at_sample = res.first_at_sample * spec.rate // spec.decode_rate
        return res
    import av

    res = StreamDecode(samples=np.zeros(length, dtype=np.int16))
    audio = [p for p in packets if p[3] == audio_pt]
    res.comfort_noise = len(packets) - len(audio)  # CN (RFC 3389), or anything but the audio
    if not audio:
        return res
    if spec.name == "ILBC":
        spec = ilbc_spec(spec, params or {}, [len(p[4]) for p in audio])
    first = min(audio, key=lambda p: p[0])
    anchor = (first[0] - start_ns) * spec.rate // NS
    res.first_at_sample = int(anchor)
    seq0, ts0 = first[1], first[2]
    ordered: dict[int, tuple[int, bytes]] = {}
    for _, seq, ts, _, payload in audio:
        ext = ((seq - seq0 + 0x8000) & 0xFFFF) - 0x8000  # sequence numbers around the first one's
        if ext in ordered:
            res.duplicates += 1
            continue
        ordered[ext] = (((ts - ts0 + 0x80000000) & 0xFFFFFFFF) - 0x80000000, payload)
    ctx = _decoder(spec)
    for ext in sorted(ordered):
        rel_ts, payload = ordered[ext]
        res.packets += 1
        pos = anchor + rel_ts * spec.rate // spec.clock
        try:
            frames, cn = frames_of(spec, payload, params or {})
        except ParseError:
            res.errors += 1
            continue
        res.comfort_noise += cn
        pcm = []
        for fr in frames:
            try:
                pcm.append(_pcm(ctx.decode(av.Packet(fr))))
            except (av.error.FFmpegError, ValueError):
                res.errors += 1
        if not pcm:
            continue
        a = np.concatenate(pcm)
        lo, hi = max(pos, 0), min(pos + len(a), length)
        if hi > lo:
            res.samples[lo:hi] = a[lo - pos : hi - pos]
    return res


def resample(a: np.ndarray, rate: int, to: int) -> np.ndarray:
    """A channel from ``rate`` to ``to`` samples a second, by FFmpeg's resampler (swresample): a
    narrowband channel beside a wideband one, or libopus's 48 kHz down to 16."""
    import av

    if rate == to or not len(a):
        return a
    rs = av.AudioResampler(format="s16", layout="mono", rate=to)
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(a, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = rate
    out = [f.to_ndarray().reshape(-1) for f in rs.resample(frame)] + [
        f.to_ndarray().reshape(-1) for f in rs.resample(None)
    ]
    n = len(a) * to // rate
    b = np.concatenate(out) if out else np.zeros(0, dtype=np.int16)
    return np.pad(b, (0, max(0, n - len(b))))[:n]
