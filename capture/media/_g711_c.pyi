# G.711 in C (ext/g711.pyx, the expansion in ext/g711.pxi): the twin of capture/media/_g711_py.py.
from collections.abc import Callable
from typing import Any

import numpy as np

ULAW_TABLE: np.ndarray
ALAW_TABLE: np.ndarray
encode_ulaw: Callable[[np.ndarray], bytes]
encode_alaw: Callable[[np.ndarray], bytes]

def ulaw_to_linear(code: int) -> int: ...
def alaw_to_linear(code: int) -> int: ...
def decode_ulaw(data: Any) -> np.ndarray: ...
def decode_alaw(data: Any) -> np.ndarray: ...
