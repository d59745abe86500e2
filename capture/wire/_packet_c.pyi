# The C frame parser (ext/packet.pyx): the twin of capture/wire/_packet_py.py.
from typing import Any

from capture.wire.frame import Frame

def parse(data: Any, linktype: int) -> Frame: ...

CONSTANTS: dict[str, int]
