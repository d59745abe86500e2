import pytest
from hypothesis import given
from hypothesis import strategies as st

from capture.errors import SdpError, SipError
from capture.numbers import decimal, is_decimal


@pytest.mark.parametrize("text", ["0", "65535", "007", b"42"])
def test_ascii_digits_within_range(text):
    assert decimal(text, 65535, SipError, "port") == int(text)


@pytest.mark.parametrize("text", ["", "²", "١٢", "12²", "+1", "-1", " 1", "1_000", "0x10", "６", b"1 ", b"\xd9\xa1"])
def test_anything_else_is_the_callers_error(text):
    assert not is_decimal(text)
    with pytest.raises(SdpError, match="bad port"):
        decimal(text, 65535, SdpError, "port")


def test_bounded():
    with pytest.raises(SipError, match="port 65536 out of range"):
        decimal("65536", 65535, SipError, "port")
    with pytest.raises(SipError, match="bad port"):  # a megabyte of digits is refused before int() reads it
        decimal("9" * 1_000_000, 65535, SipError, "port")


@given(st.text(max_size=12))
def test_any_unicode_is_a_number_or_the_callers_error(text):
    try:
        n = decimal(text, 10**9, SipError, "n")
    except SipError:
        assert not (text.isascii() and text.isdigit() and int(text) <= 10**9)
    else:
        assert text.isascii() and str(n) == text.lstrip("0") or n == 0
