# The C TPACKET_V3 block walker (ext/ring.pyx): the twin of capture/live/_ring_py.py.
from typing import Any

import numpy as np

def index_block(
    ring: Any, block_off: int, block_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...
