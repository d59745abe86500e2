# The C capture-file indexer (ext/pcapfile.pyx): the twin of capture/wire/_pcapfile_py.py.
from typing import Any

import numpy as np

class Indexer:
    buf: Any
    size: int
    pos: int
    error: str | None
    records: int
    ng: bool
    le: bool
    nano: bool
    linktype: int
    def __init__(self, buf: Any) -> None: ...
    def next_batch(self, max_records: int = 65536) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...
