"""The sidecar is one typed record: the JSON file, the catalog row, `calls --json` and the API's
schema all come from capture/store/sidecar.py."""

import dataclasses
import glob
import json
import os

from capture.options import Options
from capture.recorder import Recorder
from capture.sip.calls import EndReason
from capture.store.catalog import Catalog
from capture.store.sidecar import Sidecar, iso
from capture.testing import synth


def test_files_and_catalog_rows_are_the_record(tmp_path):
    cap, out = str(tmp_path / "c.pcap"), str(tmp_path / "out")
    synth.generate(cap, synth.SynthSpec(calls=3, duration_s=2, dtmf="5", fail_at_s=1.5))
    rec = Recorder(Options(out_dir=out, linger_s=60))
    rec.record_file(cap)
    records = [rec.calls.sidecar(r) for _, r in rec.calls.closing]  # ended, lingering for late evidence
    assert len(records) == 3 and all(r.to_dict() == dataclasses.asdict(r) for r in records)
    rec.finish()
    files = sorted(glob.glob(os.path.join(out, "calls", "*", "*", "*", "*.json")))
    assert len(files) == 3
    rows = {r["id"]: r for r in Catalog(os.path.join(out, "catalog.sqlite")).query()}
    for path in files:
        meta = json.load(open(path))
        assert set(meta) == {f.name for f in dataclasses.fields(Sidecar)}
        assert rows[meta["id"]] == meta
        assert meta["end_reason"] in {r.value for r in EndReason}
        assert {e["digit"] for e in meta["events"]} == {"5"} and meta["primary"]["evidence"]


def test_the_api_schema_is_the_record():
    from appliance.api.main import create_app
    from appliance.config import Settings

    schemas = create_app(Settings()).openapi()["components"]["schemas"]
    assert set(schemas["Sidecar"]["properties"]) == {f.name for f in dataclasses.fields(Sidecar)}
    assert set(schemas["EndReason"]["enum"]) == {r.value for r in EndReason}


def test_iso_times_are_utc_with_milliseconds():
    assert iso(None) is None
    assert iso(1_790_000_000_123_456_789) == "2026-09-21T14:13:20.123Z"
