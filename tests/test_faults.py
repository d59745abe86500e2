import logging

from capture.errors import SipError
from capture.faults import Faults, error_class


class Clock:
    t = 0.0

    def __call__(self):
        return self.t


def test_error_classes():
    assert error_class(SipError("x")) == "SipError"
    assert error_class(ValueError("x")) == "unhandled.ValueError"


def test_the_first_are_logged_then_one_line_per_class_per_interval(caplog):
    clock = Clock()
    f = Faults(first=3, every_s=60, clock=clock)
    caplog.set_level(logging.WARNING, "shadowrec")
    for _ in range(100):
        f.add(SipError("bad"))
    f.add(KeyError("k"), b"\x01\x02", "frame at 5 ns")
    assert f.counts == {"SipError": 100, "unhandled.KeyError": 1}
    assert caplog.text.count("SipError: bad") == 3
    assert "unhandled.KeyError: 'k' (frame at 5 ns); input (2 bytes): 0102" in caplog.text
    assert "Traceback" in caplog.text or caplog.records[-1].exc_info
    caplog.clear()
    clock.t = 61
    f.add(SipError("bad"))
    assert "SipError: 97 more not logged in the last 60 s" in caplog.text and "SipError: bad" in caplog.text
    caplog.clear()
    for _ in range(10):
        f.add(SipError("bad"))
    assert caplog.text == ""
