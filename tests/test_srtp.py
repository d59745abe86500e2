"""SRTP (capture/media/srtp.py): libsrtp checked against RFC 3711's test vectors through an
independent reference written here from the RFC (AES-CM, HMAC-SHA1, the key derivation); calls
whose phones send SRTP recorded sample-exact in every suite, across a sequence-number wrap, with
loss, duplicates and reordering; no keys, wrong keys and tampered packets give silence, never
noise, and say why."""

import glob
import hashlib
import hmac
import json
import os
import struct

import numpy as np
import pytest
from conftest import PY, C
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pylibsrtp import Policy, Session
from test_recorder import assert_exact, audio

from capture.media.srtp import PROFILES, SrtpStreams
from capture.options import Options
from capture.recorder import Recorder
from capture.sip.sdp import SUITES, Crypto
from capture.testing import synth

# --- a reference SRTP from RFC 3711, for the vectors ------------------------------------------


def aes_cm(key: bytes, iv: int, n: int) -> bytes:
    """AES in counter mode from the 128-bit IV (RFC 3711 4.1.1): the keystream."""
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    blocks = ((iv + i) % (1 << 128) for i in range((n + 15) // 16))
    return b"".join(enc.update(b.to_bytes(16, "big")) for b in blocks)[:n]


def kdf(master_key: bytes, master_salt: bytes, label: int, n: int, index: int = 0) -> bytes:
    """RFC 3711 4.3.1 with a key derivation rate of 0: x = label << 48 XOR salt, the IV x * 2^16."""
    x = (label << 48) ^ int.from_bytes(master_salt, "big")
    return aes_cm(master_key, x << 16, n)


def reference_protect(master: bytes, packet: bytes, roc: int) -> bytes:
    """AES_CM_128_HMAC_SHA1_80 (RFC 3711 4.1.1, 4.2.1) of one RTP packet (12-byte header)."""
    mk, ms = master[:16], master[16:30]
    ke, ks, ka = kdf(mk, ms, 0, 16), kdf(mk, ms, 2, 14), kdf(mk, ms, 1, 20)
    seq, ssrc = struct.unpack_from("!H", packet, 2)[0], struct.unpack_from("!I", packet, 8)[0]
    index = (roc << 16) | seq
    iv = (int.from_bytes(ks, "big") << 16) ^ (ssrc << 64) ^ (index << 16)
    payload = packet[12:]
    enc = bytes(a ^ b for a, b in zip(payload, aes_cm(ke, iv, len(payload))))
    authenticated = packet[:12] + enc
    tag = hmac.new(ka, authenticated + roc.to_bytes(4, "big"), hashlib.sha1).digest()[:10]
    return authenticated + tag


MASTER_KEY = bytes.fromhex("E1F97A0D3E018BE0D64FA32C06DE4139")
MASTER_SALT = bytes.fromhex("0EC675AD498AFEEBB6960B3AABE6")


def test_the_reference_meets_rfc3711_b3_key_derivation():
    assert kdf(MASTER_KEY, MASTER_SALT, 0, 16).hex().upper() == "C61E7A93744F39EE10734AFE3FF7A087"
    assert kdf(MASTER_KEY, MASTER_SALT, 2, 14).hex().upper() == "30CBBC08863D8C85D49DB34A9AE1"
    assert kdf(MASTER_KEY, MASTER_SALT, 1, 20).hex().upper() == "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"


def test_the_reference_meets_rfc3711_b2_aes_cm_keystream():
    key = bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C")
    salt = int.from_bytes(bytes.fromhex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD"), "big")
    stream = aes_cm(key, salt << 16, 48)  # SSRC 0, index 0
    assert stream.hex().upper() == (
        "E03EAD0935C95E80E166B16DD92B4EB4D23513162B02D0F72A43A2FE4A5F97AB41E95B3BB0A2E8DD477901E4FCA894C0"
    )


def rtp(seq, payload=b"\xd5" * 160, ssrc=0xCAFEBABE):
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ssrc) + payload


def test_libsrtp_protects_as_rfc3711_says_across_a_rollover_and_we_read_it_back():
    """libsrtp's packets equal the reference's byte for byte (the rollover counter goes to 1 at
    the wrap), and SrtpStreams gives back the RTP packets, in any order within its window."""
    master = MASTER_KEY + MASTER_SALT
    tx = Session(Policy(key=master, ssrc_type=Policy.SSRC_ANY_OUTBOUND))
    seqs = list(range(65530, 65536)) + list(range(65536, 65542))
    sent = [tx.protect(rtp(s, bytes([s & 0xFF]) * 160)) for s in seqs]
    assert sent == [reference_protect(master, rtp(s, bytes([s & 0xFF]) * 160), s >> 16) for s in seqs]
    rx = SrtpStreams()
    assert rx.map("c", "near", 7, True, Crypto(1, "AES_CM_128_HMAC_SHA1_80", master, False))
    order = [0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10]
    got = {i: rx.unprotect(7, sent[i]) for i in order}
    assert all(got[i] == rtp(seqs[i], bytes([seqs[i] & 0xFF]) * 160) for i in range(len(seqs)))
    assert rx.unprotect(7, sent[3]) is None  # a duplicate: a replay, dropped
    bad = bytearray(sent[5])
    bad[20] ^= 1
    tx2 = Session(Policy(key=master, ssrc_type=Policy.SSRC_ANY_OUTBOUND))
    assert rx.unprotect(7, bytes(bad)) is None  # already seen: a replay first
    for s in seqs:
        tx2.protect(rtp(s))
    forged = bytearray(tx2.protect(rtp(65542)))
    forged[-1] ^= 0x40
    assert rx.unprotect(7, bytes(forged)) is None
    st = rx.stats["c"]["near"]
    assert (st.decrypted, st.replays, st.auth_failures) == (12, 2, 1)


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_every_suite_round_trips(suite):
    key = bytes(range(SUITES[suite]))
    tx = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=PROFILES[suite]))
    rx = SrtpStreams()
    assert rx.map("c", "far", 1, True, Crypto(1, suite, key, False))
    for s in (1, 2, 3):
        assert rx.unprotect(1, tx.protect(rtp(s))) == rtp(s)


def test_streams_that_cannot_be_decrypted_say_why():
    rx = SrtpStreams()
    assert not rx.map("c", "near", 1, True, None)
    assert "without SDES keys" in rx.stats["c"]["near"].reason
    assert not rx.map("c", "far", 2, True, None, (Crypto(1, "F8_128_HMAC_SHA1_80", b"", False),))
    assert "F8_128_HMAC_SHA1_80" in rx.stats["c"]["far"].reason
    assert not rx.map("c", "far", 2, False, None) and "far" not in rx.stats["c"]  # plain RTP again


# --- calls ------------------------------------------------------------------------------------


def record(impl, tmp_path, spec, name="out", mutate=None):
    cap = str(tmp_path / f"{name}.pcap")
    calls = synth.generate(cap, spec)
    if mutate:
        mutate(cap)
    out = str(tmp_path / f"{name}-{impl.name}")
    rec = Recorder(Options(out_dir=out), impl)
    rec.record_file(cap)
    summary = rec.finish()
    metas = {m["near"]["dn"]: m for m in map(lambda p: json.load(open(p)), glob.glob(out + "/calls/*/*/*/*.json"))}
    return calls, metas, summary, out


@pytest.mark.parametrize("impl", [C, PY], ids=["c", "python"])
@pytest.mark.parametrize("suite", sorted(SUITES))
def test_srtp_calls_are_recorded_sample_exact(impl, tmp_path, suite):
    """Each suite, streams crossing a sequence-number wrap (the rollover counter), with loss,
    duplicates and reordering: the audio the phones sent, exactly; duplicates are replays."""
    spec = synth.SynthSpec(calls=3, duration_s=2, srtp=suite, loss=0.03, dup=0.03, reorder=0.03, seq_start=65490)
    calls, metas, summary, out = record(impl, tmp_path, spec)
    assert summary["errors"] == {} and len(metas) == 3
    for c in calls:
        m = metas[c.near_dn]
        assert m["encrypted"] is False and m["decoded"] is True and set(m["srtp"]) == {"near", "far"}
        for role in ("near", "far"):
            st, sent = m["srtp"][role], c.packets[role]
            assert st["suite"] == suite and st["auth_failures"] == 0 and st["reason"] is None
            assert st["decrypted"] == sent["sent"] - sent["lost"] + (2 if role == "near" and spec.dtmf else 0)
            assert st["replays"] == sent["dup"]
        assert_exact(out, c, m)


def test_srtp_with_keys_out_of_sight_is_silence_and_says_so(tmp_path):
    calls, metas, summary, out = record(C, tmp_path, synth.SynthSpec(calls=2, duration_s=2, srtp="hidden"))
    for c in calls:
        m = metas[c.near_dn]
        assert m["encrypted"] is True and m["decoded"] is False
        assert "without SDES keys" in m["srtp"]["near"]["reason"] and m["srtp"]["near"]["decrypted"] == 0
        assert not audio(out, m).any()  # silence, not ciphertext played as G.711
        assert m["pcap"]  # the encrypted packets are kept, for whoever has the keys


def test_srtp_whose_keys_do_not_match_is_silence_and_says_so(tmp_path):
    calls, metas, summary, out = record(C, tmp_path, synth.SynthSpec(calls=2, duration_s=2, srtp="mismatched"))
    for c in calls:
        m = metas[c.near_dn]
        st = m["srtp"]["far"]
        assert m["encrypted"] is True and st["decrypted"] == 0 and st["auth_failures"] == c.packets["far"]["sent"]
        assert "failed authentication" in st["reason"]
        assert not audio(out, m).any()


def test_packets_tampered_with_in_flight_are_dropped_and_counted(tmp_path):
    """Some SRTP packets have a payload byte flipped on the way: each fails its tag and is left
    out (a lost packet: silence in its place); every other packet is exact."""
    from capture.wire._pcapfile_py import Indexer

    flipped = []

    def tamper(cap):
        buf = bytearray(open(cap, "rb").read())
        offs, lens, _, _ = Indexer(bytes(buf)).next_batch(1 << 20)
        rtp_frames = [(o, n) for o, n in zip(offs.tolist(), lens.tolist()) if n > 150]
        for o, n in rtp_frames[40::50]:
            buf[o + n - 30] ^= 0x55  # inside the encrypted payload
            flipped.append(o)
        open(cap, "wb").write(bytes(buf))

    spec = synth.SynthSpec(calls=2, duration_s=3, srtp="AES_CM_128_HMAC_SHA1_80")
    calls, metas, summary, out = record(C, tmp_path, spec, mutate=tamper)
    fails = sum(st["auth_failures"] for m in metas.values() for st in m["srtp"].values())
    assert fails == len(flipped) > 0
    for c in calls:
        m = metas[c.near_dn]
        assert m["encrypted"] is False
        a = audio(out, m)
        for ch, sent in ((0, c.near), (1, c.far)):
            got = a[: len(sent), ch]
            assert np.all((got == sent) | (got == 0))  # exact, or silence where a packet was dropped


def test_a_restart_resumes_srtp_calls(tmp_path):
    """Stopped mid-call and started again: the keys come back from the state file (private, as
    the recordings), and the rest of each call is decrypted."""
    from capture.sip.calls import EndReason
    from capture.wire._pcapfile_py import Indexer

    cap = str(tmp_path / "cap.pcap")
    calls = synth.generate(cap, synth.SynthSpec(calls=2, duration_s=6, srtp="AES_CM_128_HMAC_SHA1_32"))
    out, state = str(tmp_path / "out"), str(tmp_path / "out" / "state-0.json")
    buf = open(cap, "rb").read()
    offs, lens, tss, lts = Indexer(buf).next_batch(1 << 20)
    half = len(offs) // 2
    for part in (slice(0, half), slice(half, len(offs))):
        rec = Recorder(Options(out_dir=out, state_file=state), C)
        rec.feed(buf, offs[part], lens[part], tss[part], lts[part])
        rec.finish(EndReason.SHUTDOWN if part.start == 0 else EndReason.CAPTURE_END)
        if part.start == 0:
            assert oct(os.stat(state).st_mode & 0o777) == "0o640"
    metas = {m["near"]["dn"]: m for m in map(lambda p: json.load(open(p)), glob.glob(out + "/calls/*/*/*/*.json"))}
    for c in calls:
        m = metas[c.near_dn]
        assert m["encrypted"] is False and m["srtp"]["near"]["auth_failures"] == 0
        a = audio(out, m)
        tail = 8000 * 2
        assert np.array_equal(a[-tail:, 0], c.near[-tail:]) and np.array_equal(a[-tail:, 1], c.far[-tail:])
