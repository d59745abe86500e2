"""Reference encoders for the codec tests: FFmpeg's (through PyAV) for G.722 and Opus, Belledonne's
bcg729 for G.729 (Debian's libbcg729-0, through ctypes), libgsm for GSM 06.10 (Debian's libgsm1).
Each turns a known 16-bit signal into one RTP payload per 20 ms, as a phone sends it."""

import ctypes
import ctypes.util

import av
import numpy as np


def signal(rate: int, seconds: float, silence=(1.2, 1.7)) -> np.ndarray:
    """Three tones under a slow swell, with a stretch of silence (for VAD and comfort noise)."""
    t = np.arange(int(rate * seconds)) / rate
    x = sum(a * np.sin(2 * np.pi * f * t) for a, f in ((0.5, 310.0), (0.3, 1070.0), (0.2, 2330.0)))
    x *= 0.55 + 0.45 * np.sin(2 * np.pi * 0.7 * t)
    x[(t >= silence[0]) & (t < silence[1])] = 0
    return (x * 9000).astype(np.int16)


def ffmpeg(name: str, rate: int, x: np.ndarray, per_packet: int, **opts) -> list[bytes]:
    ctx = av.CodecContext.create(name, "w")
    ctx.sample_rate, ctx.layout, ctx.format = rate, "mono", "s16"
    for k, v in opts.items():
        setattr(ctx, k, v)
    ctx.open()
    out: list[bytes] = []
    for i in range(0, len(x) - per_packet + 1, per_packet):
        f = av.AudioFrame.from_ndarray(x[i : i + per_packet].reshape(1, -1), format="s16", layout="mono")
        f.sample_rate, f.pts = rate, i
        out.extend(bytes(p) for p in ctx.encode(f))
    return out


def g722(x16k: np.ndarray) -> list[bytes]:
    return ffmpeg("g722", 16000, x16k, 320)


def opus(x16k: np.ndarray) -> list[bytes]:
    return ffmpeg("libopus", 16000, x16k, 320, bit_rate=32000)


def amr(x8k: np.ndarray, octet_aligned: bool) -> list[bytes]:
    """AMR-NB 12.2 kbit/s by opencore-amr (through FFmpeg), each 20 ms frame in an RTP payload of
    RFC 4867's ``octet_aligned`` or bandwidth-efficient mode."""
    from capture.media import amr as amr_format

    frames = ffmpeg("libopencore_amrnb", 8000, x8k, 160, bit_rate=12200)  # storage format: ToC + bits
    return [amr_format.pack([((f[0] >> 3) & 0x0F, f[1:])], octet_aligned) for f in frames]


def have_bcg729() -> bool:
    return ctypes.util.find_library("bcg729") is not None


def g729(x8k: np.ndarray, vad: bool = True) -> list[bytes]:
    """bcg729 (Annex B VAD when ``vad``): two 10 ms frames a packet; a SID frame (2 bytes) or
    nothing in silence, as a phone with VAD sends."""
    lib = ctypes.CDLL(ctypes.util.find_library("bcg729"))
    lib.initBcg729EncoderChannel.restype = ctypes.c_void_p
    enc = lib.initBcg729EncoderChannel(ctypes.c_uint8(1 if vad else 0))
    out = []
    frame = np.zeros(80, dtype=np.int16)
    for i in range(0, len(x8k) - 159, 160):
        payload = b""
        for k in (0, 80):
            frame[:] = x8k[i + k : i + k + 80]
            bits, n = ctypes.create_string_buffer(10), ctypes.c_uint8(0)
            lib.bcg729Encoder(ctypes.c_void_p(enc), frame.ctypes.data_as(ctypes.c_void_p), bits, ctypes.byref(n))
            payload += bits.raw[: n.value]
        out.append(payload)
    lib.closeBcg729EncoderChannel(ctypes.c_void_p(enc))
    return out


def gsm(x8k: np.ndarray) -> list[bytes]:
    lib = ctypes.CDLL(ctypes.util.find_library("gsm"))
    lib.gsm_create.restype = ctypes.c_void_p
    h = lib.gsm_create()
    out = []
    for i in range(0, len(x8k) - 159, 160):
        frame = np.ascontiguousarray(x8k[i : i + 160])
        buf = ctypes.create_string_buffer(33)
        lib.gsm_encode(ctypes.c_void_p(h), frame.ctypes.data_as(ctypes.c_void_p), buf)
        out.append(buf.raw)
    lib.gsm_destroy(ctypes.c_void_p(h))
    return out


def ilbc(mode: int) -> list[bytes]:
    """``signal(8000, 3.0)`` in iLBC frames, one per packet, as the WebRTC encoder made them
    (tests/data/README.md: no iLBC encoder is packaged here)."""
    import os

    data = open(os.path.join(os.path.dirname(__file__), "data", "ilbc", f"signal_3s_mode{mode}.ilbc"), "rb").read()
    n = 38 if mode == 20 else 50
    return [data[i : i + n] for i in range(0, len(data), n)]


def crashing_decoder(conn) -> None:
    """A decoder child that dies as a crash in FFmpeg would (SIGABRT) on calls whose id says so."""
    import os

    from capture.store import postdecode

    while (job := conn.recv()) is not None:
        if "crash" in job.call_id:
            os.abort()
        conn.send(("ok", postdecode.decode_call(job)))
