"""The one switch (capture/speedups.py): both sets of kernels offer what the Protocols name, with the
same parameters (mypy checks the types statically, through the .pyi stubs; this checks the built
modules as they are)."""

import inspect

import pytest
from conftest import PY, C

from capture import speedups

KERNELS = {
    "packet": speedups.PacketKernel,
    "pcapfile": speedups.PcapfileKernel,
    "sip": speedups.SipKernel,
    "engine": speedups.EngineKernel,
    "g711": speedups.G711Kernel,
    "ring": speedups.RingKernel,
}


def members(protocol):
    return [n for n in vars(protocol) if not n.startswith("_")] + list(getattr(protocol, "__annotations__", {}))


def params(fn):
    return [p.name for p in inspect.signature(fn).parameters.values() if p.name != "self"]


@pytest.mark.parametrize("field", KERNELS)
def test_both_twins_offer_every_member_with_the_same_parameters(field):
    for name in members(KERNELS[field]):
        c, py = getattr(getattr(C, field), name), getattr(getattr(PY, field), name)
        if callable(py) and not isinstance(py, type) and not hasattr(py, "dtype"):
            assert params(c) == params(py), f"{field}.{name}"


def test_engines_have_the_same_methods_with_the_same_parameters():
    c_engine, py_engine = C.Engine((5060,)), PY.Engine((5060,))
    names = members(speedups.EngineLike)
    assert len(names) == 24
    for name in names:
        c, py = getattr(c_engine, name), getattr(py_engine, name)
        if callable(py):
            assert params(c) == params(py), name
        else:
            assert type(c) is type(py), name


def test_pure_forces_the_twins_and_default_reads_the_environment(monkeypatch):
    assert (C.name, PY.name) == ("c", "python")
    monkeypatch.setenv("SHADOWREC_PURE", "1")
    assert speedups.default().name == "python"
    monkeypatch.delenv("SHADOWREC_PURE")
    assert speedups.default().name == "c"
