# cython: language_level=3, boundscheck=False, wraparound=False
"""SIP message parser (C): the twin of ``capture.sip.parse``, same result and same errors.

The header block is split into lines, unfolded, trimmed and lower-cased in C when it is ASCII,
as every message from CUCM and the recorders is. A block with other bytes goes through the
Python twin, whose Unicode rules (``str.strip`` and ``str.lower`` on text decoded with
replacement) this would otherwise have to copy. The start line and the body framing are the
twin's own functions, as is the Content-Length check: they are a small, fixed part of the cost.
"""
from cpython.unicode cimport PyUnicode_DecodeASCII

from capture.errors import SipError
from capture.sip import COMPACT, SipMessage, content_length, frame_body, split_message, start_line
from capture.sip import parse as _parse_py


cdef inline bint _space(unsigned char c) noexcept nogil:
    # str.isspace() for ASCII: what str.strip() removes
    return c == 32 or 9 <= c <= 13 or 28 <= c <= 31


cdef inline str _text(const unsigned char* p, Py_ssize_t a, Py_ssize_t b):
    return PyUnicode_DecodeASCII(<const char*>p + a, b - a, NULL)


cdef inline str _stripped(const unsigned char* p, Py_ssize_t a, Py_ssize_t b):
    while a < b and _space(p[a]):
        a += 1
    while b > a and _space(p[b - 1]):
        b -= 1
    return _text(p, a, b)


cdef dict _names = {}      # raw header name bytes -> canonical name (valid names only, bounded)


cdef str _name(const unsigned char* p, Py_ssize_t a, Py_ssize_t b):
    """Canonical lower-case name of a valid raw name, or None if it is empty or has a space."""
    cdef bytes raw = p[a:b]
    cdef object hit = _names.get(raw)
    if hit is not None:
        return <str>hit
    while a < b and _space(p[a]):
        a += 1
    while b > a and _space(p[b - 1]):
        b -= 1
    if a == b:
        return None
    cdef Py_ssize_t i
    for i in range(a, b):
        if p[i] == 32:
            return None
    name = _text(p, a, b).lower()
    name = COMPACT.get(name, name)
    if len(_names) < 1024:
        _names[raw] = name
    return name


def parse(data):
    """Parse one SIP message (a UDP payload, or one framed from a TCP stream)."""
    head, body = split_message(bytes(data))
    cdef bytes h = head
    cdef const unsigned char* p = h
    cdef Py_ssize_t n = len(h), nl = h.find(b"\n"), i, a, b, c
    method, uri, status, reason = start_line(h if nl < 0 else h[:nl])
    if nl < 0:
        return SipMessage(method, uri, status, reason, (), frame_body(body, None))
    for i in range(nl + 1, n):
        if p[i] >= 128:
            return _parse_py(data)
    cdef list headers = []
    cl = None
    a = nl + 1
    while a <= n:
        b = a
        while b < n and p[b] != 10:
            b += 1
        nxt = b + 1
        if b > a and p[b - 1] == 13:
            b -= 1
        if b > a and (p[a] == 32 or p[a] == 9) and headers:
            k, v = headers[len(headers) - 1]
            headers[len(headers) - 1] = (k, v + " " + _stripped(p, a, b))
            a = nxt
            continue
        c = a
        while c < b and p[c] != 58:
            c += 1
        name = _name(p, a, c) if c < b else None
        if name is None:
            raise SipError(f"bad header line {_text(p, a, b)[:80]!r}")
        value = _stripped(p, c + 1, b)
        if name == "content-length" and cl is None:
            cl = content_length(value)
        headers.append((name, value))
        a = nxt
    return SipMessage(method, uri, status, reason, tuple(headers), frame_body(body, cl))
