"""SRTP (RFC 3711): the phones' streams decrypted with libsrtp (pylibsrtp, aiortc's binding),
with the SDES keys CUCM's SDP carried (RFC 4568, ``capture.sip.sdp.Crypto``).

One libsrtp session per recorder port (flow key), for any SSRC sent to it: libsrtp keeps each
SSRC's rollover counter across sequence-number wraps and checks every packet's authentication
tag; a replayed packet (a duplicate) and one whose tag fails are dropped and counted, never
placed as audio. A stream whose keys were not seen (SDP with RTP/SAVP and no usable a=crypto:
DTLS-SRTP, MIKEY, SIP over TLS elsewhere) is not decrypted at all: its audio is silence, and
the sidecar says why (``encrypted``).
"""

from __future__ import annotations

from dataclasses import dataclass

from pylibsrtp import Error, Policy, Session

from capture.sip.sdp import Crypto

PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
    "AEAD_AES_128_GCM": Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    "AEAD_AES_256_GCM": Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
}

WINDOW = 1024  # the replay window (packets): a packet reordered up to this far back is taken


@dataclass
class SrtpStats:
    """One dialog's stream: its suite, what came through, and why not, if it could not."""

    suite: str = ""
    decrypted: int = 0
    auth_failures: int = 0
    replays: int = 0
    reason: str | None = None  # set when the stream cannot be decrypted at all

    @property
    def encrypted(self) -> bool:
        """Its audio could not be recovered: no keys, or every packet failed authentication."""
        return self.reason is not None or (self.decrypted == 0 and self.auth_failures > 0)

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        if self.reason is None and self.encrypted:
            d["reason"] = "every packet failed authentication: the keys seen are not the ones it was sent with"
        return d


def unusable(secure: bool, crypto: Crypto | None, offered: tuple[Crypto, ...]) -> str | None:
    """Why a stream cannot be decrypted, or None if it can (or is plain RTP)."""
    if not secure:
        return None
    if crypto is None:
        if any(c.suite not in PROFILES for c in offered):
            names = ", ".join(sorted({c.suite for c in offered}))
            return f"SRTP suite {names} is not one libsrtp decrypts here"
        if any(c.mki for c in offered):
            return "SRTP keys with an MKI are not supported"
        return "SRTP without SDES keys in the SDP (DTLS-SRTP, MIKEY, or keys exchanged out of sight)"
    return None


class SrtpStreams:
    """The SRTP sessions of the streams being recorded, by recorder port (flow key)."""

    def __init__(self) -> None:
        self.sessions: dict[int, tuple[Session, bytes, SrtpStats]] = {}
        self.stats: dict[str, dict[str, SrtpStats]] = {}  # call id -> role -> its stream's

    def map(
        self,
        call_id: str,
        role: str,
        key: int,
        secure: bool,
        crypto: Crypto | None,
        offered: tuple[Crypto, ...] = (),
        hidden: str = "",
    ) -> bool:
        """A dialog's media is (again) at ``key``. Returns True if its packets are to be decrypted
        here (``unprotect``); False for plain RTP and for SRTP that cannot be (see ``stats``).
        ``hidden``: no SDP was seen, and this is why the stream is taken as SRTP (SIP over TLS)."""
        if not secure:
            self.unmap(key)
            self.stats.get(call_id, {}).pop(role, None)
            return False
        reason = hidden or unusable(secure, crypto, offered)
        roles = self.stats.setdefault(call_id, {})
        st = roles.get(role)
        if reason is not None or crypto is None:
            self.unmap(key)
            roles[role] = SrtpStats(crypto.suite if crypto else "", reason=reason)
            return False
        have = self.sessions.get(key)
        if have is not None and have[1] == crypto.key:
            return True  # the same keys again (a re-INVITE): the rollover counters stay
        policy = Policy(key=crypto.key, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=PROFILES[crypto.suite])
        policy.window_size = WINDOW
        if st is None or st.suite != crypto.suite or st.reason is not None:
            st = SrtpStats(crypto.suite)
        roles[role] = st
        self.sessions[key] = (Session(policy), crypto.key, st)
        return True

    def unmap(self, key: int) -> None:
        self.sessions.pop(key, None)

    def forget(self, call_id: str) -> None:
        """The call's recording is final: its streams' figures are no longer needed."""
        self.stats.pop(call_id, None)

    def plain(self, key: int, packet: bytes) -> bytes | None:
        """The RTP packet to place: ``packet`` itself if ``key`` is no SRTP stream, else what
        ``unprotect`` gives (None: dropped)."""
        return self.unprotect(key, packet) if key in self.sessions else packet

    def unprotect(self, key: int, packet: bytes) -> bytes | None:
        """The RTP packet an SRTP packet to ``key`` carries; None (counted) if it is a replay or
        its authentication fails."""
        session, _, st = self.sessions[key]
        try:
            out = session.unprotect(packet)
        except Error as e:
            if "replay" in str(e):
                st.replays += 1
            else:
                st.auth_failures += 1
            return None
        st.decrypted += 1
        return out
