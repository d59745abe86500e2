"""The format a delivered copy is in, through libsndfile (soundfile), not our own encoders:

- ``wav``: 16-bit PCM, stereo, 8 kHz: a PCM recording is sent as it is, a G.711 one decoded;
- ``g711``: µ-law or A-law (the call's own codec; µ-law for anything else) in a WAV
  (WAVE_FORMAT_MULAW/ALAW): half the size. A recording kept in G.711 (``--local-format g711``)
  is sent as it is; a PCM one was decoded from G.711, so encoding it again gives back the
  phones' bytes (but for the two codes of zero, which both decode to 0);
- ``flac``: lossless, about half the size of PCM for speech;
- ``opus``: Ogg Opus (``.opus``), lossy, a few KB per second.
"""

from __future__ import annotations

from enum import StrEnum

CHUNK_FRAMES = 1 << 16


class Format(StrEnum):
    WAV = "wav"
    G711 = "g711"
    FLAC = "flac"
    OPUS = "opus"


def extension(fmt: Format) -> str:
    return {Format.WAV: "wav", Format.G711: "wav", Format.FLAC: "flac", Format.OPUS: "opus"}[fmt]


def as_recorded(fmt: Format, encoding: str) -> bool:
    """Whether a recording stored in ``encoding`` (its sidecar's) is already a copy in ``fmt``."""
    if fmt is Format.WAV:
        return encoding == "pcm16"
    return fmt is Format.G711 and encoding in ("ulaw", "alaw")


def convert(src: str, dst: str, fmt: Format, codec: str | None) -> None:
    """Write ``src`` (the recording's WAV) to ``dst`` in ``fmt``, a block at a time."""
    import soundfile as sf

    container, subtype = {
        Format.WAV: ("WAV", "PCM_16"),
        Format.G711: ("WAV", "ALAW" if codec == "PCMA" else "ULAW"),
        Format.FLAC: ("FLAC", "PCM_16"),
        Format.OPUS: ("OGG", "OPUS"),
    }[fmt]
    with sf.SoundFile(src) as f, sf.SoundFile(dst, "w", f.samplerate, f.channels, subtype, format=container) as out:
        for block in f.blocks(CHUNK_FRAMES, dtype="int16"):
            out.write(block)
