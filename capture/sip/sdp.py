"""SDP bodies (RFC 4566): ``parse(data) -> Sdp``; just what recording needs, with the SDES keys
of SRTP (RFC 4568 ``a=crypto``)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from capture.errors import SdpError
from capture.numbers import decimal, is_decimal

MAX_CLOCK_RATE = 1_000_000  # an rtpmap clock rate (Hz); the codecs phones use run at 8-48 kHz

STATIC_PT = {
    0: ("PCMU", 8000),
    3: ("GSM", 8000),
    4: ("G723", 8000),
    8: ("PCMA", 8000),
    9: ("G722", 8000),
    13: ("CN", 8000),
    18: ("G729", 8000),
}
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
# SRTP suites (RFC 4568, 6188, 7714) -> master key + salt bytes
SUITES = {
    "AES_CM_128_HMAC_SHA1_80": 30,
    "AES_CM_128_HMAC_SHA1_32": 30,
    "AEAD_AES_128_GCM": 28,
    "AEAD_AES_256_GCM": 44,
}
MAX_CRYPTO_TAG = 999_999_999  # RFC 4568: 1*9DIGIT


@dataclass(frozen=True)
class Crypto:
    """One ``a=crypto`` line: the key its sender encrypts with. ``key`` is the master key and
    salt, empty when the suite is not one we can decrypt (``SUITES``)."""

    tag: int
    suite: str
    key: bytes
    mki: bool  # an MKI is in each packet (libsrtp as used here does not take one)


def parse_crypto(value: str) -> Crypto:
    """``<tag> <suite> inline:<base64 key||salt>[|lifetime][|MKI:length] [params]``."""
    parts = value.split()
    if len(parts) < 3:
        raise SdpError(f"bad crypto attribute {value[:60]!r}")
    tag = decimal(parts[0], MAX_CRYPTO_TAG, SdpError, "crypto tag")
    suite = parts[1]
    method, _, inline = parts[2].partition(":")
    if method != "inline" or not inline:
        raise SdpError(f"crypto key method {parts[2][:30]!r} is not inline")
    fields = inline.split("|")
    if suite not in SUITES:
        return Crypto(tag, suite, b"", len(fields) > 2 or (len(fields) == 2 and ":" in fields[1]))
    try:
        key = base64.b64decode(fields[0].encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise SdpError(f"crypto key {fields[0][:20]!r} is not base64") from e
    if len(key) != SUITES[suite]:
        raise SdpError(f"{suite} needs {SUITES[suite]} bytes of key and salt, the key has {len(key)}")
    return Crypto(tag, suite, key, any(":" in f for f in fields[1:]))


@dataclass(frozen=True)
class Media:
    kind: str
    port: int
    proto: str
    fmts: tuple  # payload types, in order of preference
    address: str | None  # c= of the media, else of the session
    rtpmap: tuple  # ((pt, encoding name upper-case, clock rate), ...)
    direction: str
    crypto: tuple[Crypto, ...]  # SDES keys, in order of preference
    fmtp: tuple[tuple[int, str], ...] = ()  # (payload type, its a=fmtp parameters)

    def params(self, pt: int) -> dict[str, str]:
        """A payload type's a=fmtp parameters (``octet-align=1;mode-set=7`` -> a dict)."""
        return fmtp_params(next((f for p, f in self.fmtp if p == pt), ""))

    @property
    def secure(self) -> bool:
        """The media is SRTP (RTP/SAVP, RTP/SAVPF, UDP/TLS/RTP/SAVP...)."""
        return "SAVP" in self.proto.upper()

    def encoding(self, pt: int):
        for p, name, rate in self.rtpmap:
            if p == pt:
                return name, rate
        return STATIC_PT.get(pt, (f"PT{pt}", 8000))

    def pt_of(self, name: str):
        for p in self.fmts:
            if self.encoding(p)[0] == name.upper():
                return p
        return None


def fmtp_params(text: str) -> dict[str, str]:
    """``octet-align=1; mode-set=7`` -> {"octet-align": "1", "mode-set": "7"} (names lower-cased)."""
    out = {}
    for item in text.split(";"):
        k, _, v = item.strip().partition("=")
        if k:
            out[k.lower()] = v.strip()
    return out


@dataclass(frozen=True)
class Sdp:
    origin: str
    media: tuple

    def audio(self) -> Media | None:
        for m in self.media:
            if m.kind == "audio" and m.port:
                return m
        return None


def parse(data: bytes) -> Sdp:
    """Parse an SDP body; raises SdpError with the offending line."""
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise SdpError("SDP is not UTF-8") from e
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0] != "v=0":
        raise SdpError(f"SDP must start with v=0, got {lines[0][:40] if lines else 'nothing'!r}")
    origin = ""
    sess_addr: str | None = None
    sess_dir = "sendrecv"
    media: list[Media] = []
    cur: dict[str, Any] | None = None

    def close():
        if cur is not None:
            media.append(
                Media(
                    cur["kind"],
                    cur["port"],
                    cur["proto"],
                    tuple(cur["fmts"]),
                    cur["addr"] or sess_addr,
                    tuple(cur["rtpmap"]),
                    cur["dir"] or sess_dir,
                    tuple(cur["crypto"]),
                    tuple(cur["fmtp"]),
                )
            )

    for ln in lines[1:]:
        if len(ln) < 2 or ln[1] != "=":
            raise SdpError(f"bad SDP line {ln[:60]!r}")
        t, v = ln[0], ln[2:]
        if t == "o":
            origin = v
        elif t == "c":
            parts = v.split()
            if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
                raise SdpError(f"bad connection line {ln[:60]!r}")
            addr = parts[2].split("/")[0]
            if cur is None:
                sess_addr = addr
            else:
                cur["addr"] = addr
        elif t == "m":
            close()
            parts = v.split()
            if len(parts) < 3:
                raise SdpError(f"bad media line {ln[:60]!r}")
            port = decimal(parts[1].split("/")[0], 65535, SdpError, "media port")
            fmts = [int(f) for f in parts[3:] if is_decimal(f) and len(f) <= 3 and int(f) < 128]
            cur = {
                "kind": parts[0].lower(),
                "port": port,
                "proto": parts[2],
                "fmts": fmts,
                "addr": None,
                "rtpmap": [],
                "dir": None,
                "crypto": [],
                "fmtp": [],
            }
        elif t == "a":
            name, _, val = v.partition(":")
            if name in DIRECTIONS:
                if cur is None:
                    sess_dir = name
                else:
                    cur["dir"] = name
            elif cur is not None and name == "rtpmap":
                pt, _, enc = val.partition(" ")
                bits = enc.split("/")
                if len(bits) < 2:
                    raise SdpError(f"bad rtpmap {ln[:60]!r}")
                pt_n = decimal(pt, 127, SdpError, "rtpmap payload type")
                cur["rtpmap"].append((pt_n, bits[0].upper(), decimal(bits[1], MAX_CLOCK_RATE, SdpError, "clock rate")))
            elif cur is not None and name == "crypto":
                cur["crypto"].append(parse_crypto(val))
            elif cur is not None and name == "fmtp":
                pt, _, params = val.partition(" ")
                cur["fmtp"].append((decimal(pt, 127, SdpError, "fmtp payload type"), params.strip()))
    close()
    return Sdp(origin, tuple(media))
