"""A real appliance data directory for the API tests: recordings made by the pipeline from a
synthetic capture in which the primary dies, one call still open, and a worker status file."""

import os
import time

from capture.options import Options
from capture.recorder import Recorder
from capture.store.files import write_json_atomic
from capture.testing import synth
from capture.wire._pcapfile_py import Indexer


def make(out: str) -> dict:
    cap = os.path.join(out, "..", "api.pcap")
    synth.generate(cap, synth.SynthSpec(calls=5, duration_s=3, fail_at_s=2.0, seed=4))
    rec = Recorder(Options(out_dir=out))
    rec.record_file(cap)
    rec.finish()
    # a sixth call still being recorded: half of its capture fed, nothing finished
    cap2 = os.path.join(out, "..", "live.pcap")
    synth.generate(cap2, synth.SynthSpec(calls=1, duration_s=6, seed=5, start_offset_s=3600))
    live = Recorder(Options(out_dir=out))
    buf = open(cap2, "rb").read()
    b = Indexer(buf).next_batch(10**6)
    keep = b[2] < b[2][0] + 3 * 10**9
    live.feed(buf, *(x[keep] for x in b))
    live.tick(int(b[2][keep][-1]) + 10**9)
    live.calls.catalog.commit()
    status = live.status()
    status.update(
        {
            "worker": 0,
            "workers": 1,
            "received": 1234,
            "kernel_packets": 1234,
            "kernel_drops": 7,
            "link_errors": 2,
            "last_packet_at": time.time() - 5,
            "write_wait_s": 1.25,
            "time": time.time(),
            "cpu_s": 0.1,
        }
    )
    write_json_atomic(os.path.join(out, "status-0.json"), status)
    # an archive target that has been failing for two hours, with every complete call still to send
    from appliance.delivery.policy import Policy
    from appliance.delivery.queue import Queue

    q = Queue(os.path.join(out, "catalog.sqlite"))
    q.register("s3://archive/site1", Policy.ALL)
    q.enqueue("s3://archive/site1", Policy.ALL)
    for d in q.due("s3://archive/site1", time.time(), 100):
        q.fail(d.call_id, "s3://archive/site1", "EndpointConnectionError: no route to the archive", time.time() + 60)
    q.db.execute("UPDATE deliveries SET first_failed_at = ?", (time.time() - 7200,))
    q.close()
    return {"recorder": live}
