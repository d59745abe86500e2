from collections.abc import Iterator

from fastapi import APIRouter, Depends, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from appliance.api.deps import delivery_state, disk_state, get_settings, require_token, worker_status
from appliance.config import Settings
from capture.live.status import merge_counters

router = APIRouter(tags=["metrics"], dependencies=[Depends(require_token)])


class _Collector:
    def __init__(self, settings: Settings):
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        st = worker_status(self.settings)
        counters = {
            "received": "packets received by the capture workers",
            "kernel_drops": "packets the kernel dropped before shadowrec read them",
            "bytes_written": "audio bytes written",
            "write_dropped_bytes": "audio dropped: disk behind",
            "write_errors": "writes the disk refused",
            "link_errors": "times the SPAN link went down",
            "calls_recorded": "calls recorded",
        }
        for key, doc in counters.items():
            m: CounterMetricFamily | GaugeMetricFamily = CounterMetricFamily(f"shadowrec_{key}", doc, labels=["worker"])
            for s in st:
                m.add_metric([str(s.get("worker", 0))], float(s.get(key, 0)))
            yield m
        for key, doc in {
            "active_calls": "calls being recorded",
            "queue_bytes": "bytes waiting for the disk",
            "active_lost_packets": "packets lost so far in calls being recorded",
            "ring_bytes": "memory of the calls' audio rings",
        }.items():
            m = GaugeMetricFamily(f"shadowrec_{key}", doc, labels=["worker"])
            for s in st:
                m.add_metric([str(s.get("worker", 0))], float(s.get(key, 0)))
            yield m
        m = CounterMetricFamily(
            "shadowrec_write_wait_seconds",
            "time capture waited for the disk writer while the kernel ring had room",
            labels=["worker"],
        )
        for s in st:
            m.add_metric([str(s.get("worker", 0))], float(s.get("write_wait_s", 0.0)))
        yield m
        m = GaugeMetricFamily(
            "shadowrec_last_packet_timestamp_seconds",
            "wall time the SPAN port last delivered a packet",
            labels=["worker"],
        )
        for s in st:
            if s.get("last_packet_at"):
                m.add_metric([str(s.get("worker", 0))], float(s["last_packet_at"]))
        yield m
        e = CounterMetricFamily("shadowrec_parse_errors", "malformed input counted and skipped", labels=["kind"])
        for k, v in merge_counters(st)["errors"].items():
            e.add_metric([k], float(v))
        yield e
        d = disk_state(self.settings, st)
        g = GaugeMetricFamily("shadowrec_disk_full", "1 while the disk is full: audio is a counted gap")
        g.add_metric([], 1.0 if d["state"] == "full" else 0.0)
        yield g
        c = CounterMetricFamily("shadowrec_disk_gap_seconds", "audio not written because the disk was full")
        c.add_metric([], float(d["gap_s"]))
        yield c
        sb = next((s["standby"] for s in st if s.get("standby")), None)
        if sb:
            yield from _standby(sb)
        yield from _delivery(delivery_state(self.settings))


def _delivery(targets: list[dict]) -> Iterator[Metric]:
    for name, kind, key, doc in (
        ("shadowrec_delivery_queue_depth", GaugeMetricFamily, "pending", "calls not yet confirmed by the target"),
        ("shadowrec_delivery_oldest_undelivered_seconds", GaugeMetricFamily, "oldest_pending_age_s",
         "age of the oldest call the target has not confirmed"),
        ("shadowrec_delivery_failing", GaugeMetricFamily, "failing", "1 while the target fails longer than allowed"),
        ("shadowrec_delivery_failures", CounterMetricFamily, "failed_attempts", "failed delivery attempts"),
        ("shadowrec_delivery_calls", CounterMetricFamily, "confirmed", "calls the target confirmed"),
        ("shadowrec_delivery_bytes", CounterMetricFamily, "bytes_confirmed", "bytes the target confirmed"),
    ):  # fmt: skip
        m = kind(name, doc, labels=["target"])
        for t in targets:
            if t.get(key) is not None:
                m.add_metric([t["target"]], float(t[key]))
        yield m


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc)
    g.add_metric([], value)
    return g


def _labelled(name: str, doc: str, label: str, values: dict) -> CounterMetricFamily:
    c = CounterMetricFamily(name, doc, labels=[label])
    for k, v in values.items():
        c.add_metric([k], float(v))
    return c


SIP_REQUESTS = {"invites": "INVITE", "acks": "ACK", "byes": "BYE", "cancels": "CANCEL", "options": "OPTIONS"}
SIP_REFUSED = ("not_peer", "refused_full", "bad_messages", "tcp_refused", "tcp_closed_stalled", "tcp_closed_idle")


def _standby(sb: dict) -> Iterator[Metric]:
    vrrp, sip = sb.get("vrrp") or {}, sb.get("sip") or {}
    yield _gauge("shadowrec_vrrp_master", "1 while shadowrec holds the VIP", float(vrrp.get("state") == "Master"))
    yield _gauge(
        "shadowrec_primary_up", "1 while the primary recorder answers its probes", float(sb.get("health") == "alive")
    )
    yield _labelled(
        "shadowrec_vrrp_adverts_rejected",
        "VRRP adverts not believed (not a peer, off the subnet, another address list, TTL, malformed)",
        "reason",
        vrrp.get("adverts_rejected", {}),
    )
    c = CounterMetricFamily(
        "shadowrec_vrrp_conflicts", "higher-priority adverts not obeyed because the primary is judged dead"
    )
    c.add_metric([], float(vrrp.get("conflicts", 0)))
    yield c
    if not sip:
        return
    yield _gauge(
        "shadowrec_sip_up",
        "1 while the standby's SIP server runs and ticks (it answers while the VIP is here)",
        float(sip.get("state") == "answering"),
    )
    yield _gauge("shadowrec_sip_dialogs", "dialogs answered here and not yet ended", float(sip.get("dialogs", 0)))
    yield _gauge("shadowrec_sip_tcp_connections", "SIP TCP connections open", float(sip.get("tcp_connections", 0)))
    yield _labelled(
        "shadowrec_sip_requests",
        "SIP requests handled by the standby's server",
        "method",
        {m: sip.get(k, 0) for k, m in SIP_REQUESTS.items()},
    )
    yield _labelled(
        "shadowrec_sip_refused",
        "SIP messages or connections refused: not a peer (no answer), full (503), malformed, TCP cap or stall",
        "reason",
        {r: sip.get(r, 0) for r in SIP_REFUSED},
    )
    yield _labelled(
        "shadowrec_sip_socket_errors",
        "socket errors in the SIP server, by operation and errno",
        "error",
        sip.get("socket_errors", {}),
    )


@router.get(
    "/metrics", summary="Prometheus metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}}
)
def metrics(settings: Settings = Depends(get_settings)) -> Response:
    reg = CollectorRegistry()
    reg.register(_Collector(settings))
    return Response(generate_latest(reg), media_type="text/plain; version=0.0.4; charset=utf-8")
