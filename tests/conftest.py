import os
import sys

import pytest
from hypothesis import settings

# CI explores the same examples every run (a red CI is reproducible); local runs keep exploring.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from capture import speedups  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data")
C = speedups.load(pure=False)
PY = speedups.load(pure=True)
if C.name != "c" and os.environ.get("CI"):
    raise RuntimeError("the C kernels must be built for CI (pip install -e . or setup.py build_ext --inplace)")
IMPLS = [pytest.param(C, id="c"), pytest.param(PY, id="python")]


@pytest.fixture(params=IMPLS)
def impl(request):
    return request.param


def data(name):
    return os.path.join(DATA, name)


def sip_sample(name):
    """A sample SIP message with the CRLF line ends it had on the wire."""
    with open(data(name), "rb") as f:
        return f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@pytest.fixture(scope="session")
def pg_server():
    """One real PostgreSQL for the session (tests/pg.py)."""
    from pg import PgServer

    server = PgServer()
    server.start()
    yield server
    server.remove()


@pytest.fixture
def pg_url(pg_server, request):
    """A fresh database on it, named after the test."""
    import re

    name = "t_" + re.sub(r"[^a-z0-9]", "_", request.node.name.lower())[:50]
    return pg_server.createdb(name)


@pytest.fixture(autouse=True)
def _umask():
    """Each test leaves the process's umask as it found it (``shadowrec``'s main() tightens it for the
    recordings; a later test's subprocess, a package build, must not inherit that)."""
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)
