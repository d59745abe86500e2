"""The format a delivered copy is in, through libsndfile (soundfile), not our own encoders:

- ``wav``: the recording as it is (16-bit PCM, stereo, 8 kHz): sent without conversion;
- ``g711``: µ-law or A-law (the call's own codec; µ-law for anything else) in a WAV
  (WAVE_FORMAT_MULAW/ALAW): half the size. The recording was decoded from G.711, so encoding it
  again gives back the phones' bytes (but for the two codes of zero, which both decode to 0);
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


def convert(src: str, dst: str, fmt: Format, codec: str | None) -> None:
    """Write ``src`` (the recording's WAV) to ``dst`` in ``fmt``, a block at a time."""
    import soundfile as sf

    if fmt is Format.WAV:
        raise ValueError("a wav copy is the recording itself: nothing to convert")
    container, subtype = {
        Format.G711: ("WAV", "ALAW" if codec == "PCMA" else "ULAW"),
        Format.FLAC: ("FLAC", "PCM_16"),
        Format.OPUS: ("OGG", "OPUS"),
    }[fmt]
    with sf.SoundFile(src) as f, sf.SoundFile(dst, "w", f.samplerate, f.channels, subtype, format=container) as out:
        for block in f.blocks(CHUNK_FRAMES, dtype="int16"):
            out.write(block)
