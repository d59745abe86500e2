# cython: language_level=3, boundscheck=False, wraparound=False
"""SIP message parser (C): the twin of ``capture.sip.message.parse``, same result and same errors.

The header block is split into lines, unfolded, trimmed and lower-cased in C when it is ASCII,
as every message from CUCM and the recorders is. A block with other bytes goes through the
Python twin, whose Unicode rules (``str.strip`` and ``str.lower`` on text decoded with
replacement) this would otherwise have to copy. The end of the header block is found, and an
ASCII start line of the usual shapes is read, in C too; any other start line, the body framing
and the Content-Length check are the twin's own functions, so errors read the same.
"""
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.string cimport memchr

from capture.errors import SipError, Truncated
from capture.sip.message import _TOKEN, COMPACT, MAX_HEADER_BYTES, SipMessage, content_length, frame_body, start_line
from capture.sip.message import parse as _parse_py


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


cdef bint _token[256]          # the characters of a SIP method: those the twin's _TOKEN accepts
for _c in range(256):
    _token[_c] = _TOKEN.match(bytes([_c])) is not None


cdef Py_ssize_t _blank_line(const unsigned char* p, Py_ssize_t lim):
    """Where the first "\n\n" or "\n\r\n" lying wholly before ``lim`` starts, or -1
    (``capture.sip.message._split_head``'s two finds)."""
    cdef const unsigned char* q = p
    cdef const unsigned char* end = p + lim
    while q < end:
        q = <const unsigned char*>memchr(q, 10, end - q)
        if q == NULL:
            return -1
        if q + 1 < end and q[1] == 10:
            return q - p
        if q + 2 < end and q[1] == 13 and q[2] == 10:
            return q - p
        q += 1
    return -1


cdef tuple _start_line(const unsigned char* p, Py_ssize_t n):
    """``capture.sip.message.start_line`` of ``p[:n]`` for an ASCII line of the usual shapes; anything
    else goes to the twin (so its errors read the same)."""
    cdef Py_ssize_t e = n, s1 = -1, s2 = -1, i
    cdef int status
    while e > 0 and p[e - 1] == 13:
        e -= 1
    for i in range(e):
        if p[i] >= 128:
            return start_line(p[:n])
        if p[i] == 32:
            if s1 < 0:
                s1 = i
            elif s2 < 0:
                s2 = i
    if s1 == 7 and p[:7] == b"SIP/2.0":
        if (s2 == 11 or (s2 < 0 and e == 11)) and 48 <= p[8] <= 57 and 48 <= p[9] <= 57 and 48 <= p[10] <= 57:
            status = (p[8] - 48) * 100 + (p[9] - 48) * 10 + (p[10] - 48)
            if 100 <= status <= 699:
                return None, None, status, _text(p, 12, e) if s2 > 0 else ""
        return start_line(p[:n])
    if s1 <= 0 or s2 <= s1 or e - s2 != 8 or p[s2 + 1:e] != b"SIP/2.0":
        return start_line(p[:n])
    for i in range(s1):
        if not _token[p[i]]:
            return start_line(p[:n])
    return _text(p, 0, s1).upper(), _text(p, s1 + 1, s2), None, ""


def parse(data):
    """Parse one SIP message (a UDP payload, or one framed from a TCP stream)."""
    cdef bytes d = bytes(data)
    cdef const unsigned char* p = d
    cdef Py_ssize_t n = len(d), q, hend, bstart, nl, i, a, b, c
    if n == 0:
        raise Truncated("empty SIP message")
    q = _blank_line(p, min(n, MAX_HEADER_BYTES + 4))
    if q < 0:
        if n > MAX_HEADER_BYTES:
            raise SipError(f"no end of headers within {MAX_HEADER_BYTES} bytes")
        if p[n - 1] != 10:
            raise Truncated(f"SIP headers not terminated ({n} bytes)")
        hend = n
        while hend > 0 and (p[hend - 1] == 10 or p[hend - 1] == 13):
            hend -= 1
        body = b""
    else:
        hend = q - 1 if q and p[q - 1] == 13 else q
        bstart = q + 2 if p[q + 1] == 10 else q + 3
        body = d[bstart:]
    cdef const unsigned char* hit = <const unsigned char*>memchr(p, 10, hend)
    nl = hit - p if hit != NULL else -1
    method, uri, status, reason = _start_line(p, hend if nl < 0 else nl)
    if nl < 0:
        return SipMessage(method, uri, status, reason, (), frame_body(body, None))
    for i in range(nl + 1, hend):
        if p[i] >= 128:
            return _parse_py(data)
    cdef list headers = []
    cl = None
    a = nl + 1
    while a <= hend:
        b = a
        while b < hend and p[b] != 10:
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
