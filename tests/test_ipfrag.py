from capture.wire.ipfrag import Defragmenter


def test_out_of_order_and_duplicate_fragments():
    d = Defragmenter()
    data = bytes(range(256)) * 3
    parts = [(0, True, data[:256]), (512, False, data[512:]), (256, True, data[256:512])]
    assert d.add("k", *parts[1], 0) is None
    assert d.add("k", *parts[1], 0) is None
    assert d.add("k", *parts[0], 1) is None
    assert d.add("k", *parts[2], 2) == data
    assert not d.pending


def test_expiry_and_oversize():
    d = Defragmenter()
    d.add("k", 0, True, b"x" * 8, 0)
    d.expire(31 * 10**9)
    assert not d.pending and d.counters["fragments_expired"] == 1
    assert d.add("k", 65528, False, b"x" * 16, 0) is None and d.counters["fragment_errors"] == 1
