# The RTP header walk (RFC 3550), included by ext/engine.pyx. Its twin is
# capture/wire/rtp.py's header_length, which the Python engine calls; the engine agreement
# properties (tests/test_engine.py) feed both random and malformed packets.


cdef inline bint rtp_walk(const unsigned char* p, Py_ssize_t length, Py_ssize_t* header,
                          Py_ssize_t* payload) noexcept nogil:
    """The header and payload lengths (padding excluded) of the RTP packet ``p[:length]``;
    False for anything that is not an RTP version 2 packet as long as it says."""
    cdef Py_ssize_t h, plen
    cdef int b0, padn
    if length < 12 or (p[0] >> 6) != 2:
        return False
    b0 = p[0]
    h = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if h + 4 > length:
            return False
        h += 4 + 4 * ((p[h + 2] << 8) | p[h + 3])
    if h > length:
        return False
    plen = length - h
    if b0 & 0x20:
        padn = p[length - 1]
        if padn == 0 or padn > plen:
            return False
        plen -= padn
    header[0] = h
    payload[0] = plen
    return True
