"""The one switch between the Cython kernels (built from ext/) and their pure-Python twins.

``SHADOWREC_PURE=1`` forces the twins; without it the C kernels are used when they are
built, and the twins otherwise (with a warning, since they are ~30x slower).
"""
from __future__ import annotations

import os
import types
import warnings


def load(pure: bool = False) -> types.SimpleNamespace:
    """Return a namespace with ``packet`` (parse), ``Indexer``, ``Engine``, ``g711``, ``index_block``,
    ``sip`` (parse)."""
    if not pure:
        try:
            from capture.media import _engine_c, _g711_c
            from capture.wire import _packet_c, _pcapfile_c as _pcap_c
            from capture.live import _ring_c
            from capture.sip import _message_c as _sip_c
        except ImportError as e:  # not built (e.g. a source checkout without setup.py build_ext)
            warnings.warn(f"shadowrec C kernels unavailable ({e}); using the pure-Python twins",
                          RuntimeWarning, stacklevel=2)
        else:
            if not _engine_c.AUDIO:
                warnings.warn("shadowrec was built with SHADOWREC_NO_AUDIO (a benchmark floor): "
                              "recordings will be silence", RuntimeWarning, stacklevel=2)
            return types.SimpleNamespace(name="c", packet=_packet_c, Indexer=_pcap_c.Indexer,
                                         Engine=_engine_c.Engine, g711=_g711_c, engine=_engine_c,
                                         index_block=_ring_c.index_block, sip=_sip_c)
    from capture.media import _engine_py, _g711_py
    from capture.wire import _packet_py, _pcapfile_py as _pcap_py
    from capture.live import _ring_py
    from capture.sip import message as sip
    return types.SimpleNamespace(name="python", packet=_packet_py, Indexer=_pcap_py.Indexer,
                                 Engine=_engine_py.Engine, g711=_g711_py, engine=_engine_py,
                                 index_block=_ring_py.index_block, sip=sip)


def default() -> types.SimpleNamespace:
    return load(pure=os.environ.get("SHADOWREC_PURE", "") == "1")
