import warnings

import numpy as np
from conftest import PY, C
from hypothesis import given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # the CPython reference implementation of G.711 (Sun g711.c)


def test_tables_match_reference_bit_exactly(impl):
    codes = bytes(range(256))
    assert impl.g711.decode_ulaw(codes).tobytes() == audioop.ulaw2lin(codes, 2)
    assert impl.g711.decode_alaw(codes).tobytes() == audioop.alaw2lin(codes, 2)
    assert [impl.g711.ulaw_to_linear(i) for i in range(256)] == list(np.frombuffer(audioop.ulaw2lin(codes, 2), "<i2"))


def test_known_values(impl):
    # G.711: µ-law 0xFF and 0x7F are the two zeros, 0x00 the most negative; A-law 0xD5 is +8
    assert impl.g711.ulaw_to_linear(0xFF) == 0 and impl.g711.ulaw_to_linear(0x7F) == 0
    assert impl.g711.ulaw_to_linear(0x00) == -32124 and impl.g711.ulaw_to_linear(0x80) == 32124
    assert impl.g711.alaw_to_linear(0xD5) == 8 and impl.g711.alaw_to_linear(0x55) == -8
    assert impl.g711.alaw_to_linear(0xAA) == 32256


def test_encoder_round_trips_every_code():
    for enc, dec in ((PY.g711.encode_ulaw, PY.g711.decode_ulaw), (PY.g711.encode_alaw, PY.g711.decode_alaw)):
        values = dec(bytes(range(256)))
        assert np.array_equal(dec(enc(values)), values)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_c_and_python_agree(data):
    assert np.array_equal(C.g711.decode_ulaw(data), PY.g711.decode_ulaw(data))
    assert np.array_equal(C.g711.decode_alaw(data), PY.g711.decode_alaw(data))
