# The flow table, included by ext/engine.pyx: (recorder address, port) -> stream id. IPv4 flows
# live in an open-addressing C table the hot loop probes without the GIL; IPv6 flows stay in the
# engine's Python dict (``flows``, which holds every flow). The Python twin is a dict.


DEF EMPTY = 0
DEF TOMB = 0xFFFFFFFFFFFFFFFF


cdef struct V4Slot:
    uint64_t key                    # flow key + 1 (0: empty, TOMB: deleted)
    int64_t val


cdef class _V4Table:
    """Open addressing (linear probing) from an IPv4 flow key (< 2**48) to a stream id.

    The hot loop looks up IPv4 flows here without creating a Python int; IPv6 flows stay in
    the Python dict. Keys are stored plus one so that 0 can mean empty. A key and its value
    share a 16-byte slot, so a lookup costs one cache line (``slot_of`` gives it to prefetch).
    """
    cdef V4Slot* slots
    cdef Py_ssize_t cap, used

    def __cinit__(self):
        self.cap = 1024
        self.used = 0
        self.slots = <V4Slot*>calloc(self.cap, sizeof(V4Slot))
        if self.slots == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.slots)

    cdef inline Py_ssize_t _home(self, uint64_t k) noexcept nogil:
        """Where the probe for stored key ``k`` (a flow key + 1) starts."""
        return <Py_ssize_t>((k * 0x9E3779B97F4A7C15ULL) >> 40) & (self.cap - 1)

    cdef inline const V4Slot* slot_of(self, uint64_t key) noexcept nogil:
        """The slot where the probe for ``key`` starts (to prefetch it)."""
        return &self.slots[self._home(key + 1)]

    cdef inline Py_ssize_t find(self, uint64_t key) noexcept nogil:
        cdef uint64_t k = key + 1
        cdef Py_ssize_t mask = self.cap - 1
        cdef Py_ssize_t i = self._home(k)
        while True:
            if self.slots[i].key == k:
                return self.slots[i].val
            if self.slots[i].key == EMPTY:
                return -1
            i = (i + 1) & mask

    cdef int put(self, uint64_t key, int32_t val) except -1:
        cdef Py_ssize_t mask, i
        cdef uint64_t k = key + 1
        if (self.used + 1) * 2 > self.cap:
            self._grow()
        mask = self.cap - 1
        i = self._home(k)
        while self.slots[i].key != EMPTY and self.slots[i].key != TOMB and self.slots[i].key != k:
            i = (i + 1) & mask
        if self.slots[i].key == EMPTY:
            self.used += 1
        self.slots[i].key = k
        self.slots[i].val = val
        return 0

    cdef void delete(self, uint64_t key) noexcept:
        cdef uint64_t k = key + 1
        cdef Py_ssize_t mask = self.cap - 1
        cdef Py_ssize_t i = self._home(k)
        while self.slots[i].key != EMPTY:
            if self.slots[i].key == k:
                self.slots[i].key = TOMB          # still counted in used until the next grow
                return
            i = (i + 1) & mask

    cdef int _grow(self) except -1:
        cdef V4Slot* old = self.slots
        cdef Py_ssize_t oc = self.cap, i
        live = sum(1 for i in range(oc) if old[i].key != EMPTY and old[i].key != TOMB)
        self.cap = oc * 2 if (live + 1) * 4 > oc else oc
        self.slots = <V4Slot*>calloc(self.cap, sizeof(V4Slot))
        if self.slots == NULL:
            self.slots = old
            self.cap = oc
            raise MemoryError()
        self.used = 0
        for i in range(oc):
            if old[i].key != EMPTY and old[i].key != TOMB:
                self.put(old[i].key - 1, <int32_t>old[i].val)
        free(old)
        return 0


cdef inline object key_of(const unsigned char* a, int alen, int port):
    cdef uint64_t v
    if alen == 4:
        v = (<uint64_t>u32(a, 0) << 16) | port
        return v
    return (int.from_bytes(a[:16], "big") << 16) | port | (1 << 160)
