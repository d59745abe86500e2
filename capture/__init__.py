"""shadowrec: passive recording of Cisco Built-in-Bridge calls from a SPAN port."""

import os as _os

# shadowrec uses numpy for buffers, never for linear algebra. OpenBLAS would otherwise start a
# thread pool at import; a process that forks capture workers must not have stray threads
# (a child can inherit a lock one of them held, and hang).
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    _os.environ.setdefault(_v, "1")

__version__ = "0.1.0"
