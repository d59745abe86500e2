"""The WAV format (capture/media/wav.py): what Python's wave module reads, and the data size read back."""

import io
import wave

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capture.media import wav


@given(st.integers(0, 10_000).map(lambda n: n * wav.FRAME_BYTES))
def test_header_is_a_wav_that_the_wave_module_reads(nbytes):
    head = wav.header(nbytes)
    assert len(head) == wav.HEADER_BYTES and wav.data_bytes(head) == nbytes
    with wave.open(io.BytesIO(head + b"\0" * nbytes)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (
            wav.CHANNELS,
            wav.SAMPLE_BYTES,
            wav.RATE,
            nbytes // wav.FRAME_BYTES,
        )


@pytest.mark.parametrize("head", [b"", b"RIFF", b"RIFX" + wav.header(400)[4:], wav.header(400)[:43]])
def test_anything_not_our_header_vouches_for_nothing(head):
    assert wav.data_bytes(head) == 0
