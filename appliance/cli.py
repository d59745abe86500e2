"""The ``shadowrec`` command: record, calls, synth, bench."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from capture import __version__


def _record(args) -> int:
    from capture.recorder import Options, Recorder

    opts = Options(out_dir=args.out, sip_ports=tuple(args.sip_port or (5060,)),
                   rtp_timeout_s=args.rtp_timeout, keep_pcap=args.pcap, durable_s=args.fsync_interval)
    files = list(args.files)
    if not files:
        from capture.testing.synth import SynthSpec, generate
        demo = os.path.join(args.out, "demo-bib.pcap")
        os.makedirs(args.out, exist_ok=True)
        generate(demo, SynthSpec(calls=6, duration_s=8, fail_at_s=5.0, dtmf="42", loss=0.01, dup=0.01,
                                 reorder=0.01, jitter_ms=5))
        print(f"no capture given: recording the embedded demo {demo} (6 BiB calls, primary dies at 5 s)",
              file=sys.stderr)
        files = [demo]
    rec = Recorder(opts)
    t = time.perf_counter()
    for f in files:
        rec.record_file(f)
    summary = rec.finish()
    summary["seconds"] = round(time.perf_counter() - t, 3)
    json.dump(summary, sys.stdout, indent=2, sort_keys=True)
    print()
    return 0


def _reserve(text: str) -> int:
    """--reserve-calls: 0-100,000 calls (the appliance's capture.reserve_calls bounds)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of calls") from None
    if not 0 <= n <= 100_000:
        raise argparse.ArgumentTypeError(f"{n} is outside 0-100000")
    return n


def _capture(args) -> int:
    from capture.errors import ConfigError
    from capture.live.worker import capture
    from capture.recorder import Options

    opts = Options(out_dir=args.out, sip_ports=tuple(args.sip_port or (5060,)), rtp_timeout_s=args.rtp_timeout,
                   keep_pcap=args.pcap, durable_s=args.fsync_interval, queue_mb=args.queue_mb,
                   reserve_calls=args.reserve_calls)
    try:
        summary = capture(args.iface, opts, workers=args.workers, ring_mb=args.ring_mb, block_kb=args.block_kb,
                          bpf=args.filter, max_seconds=args.seconds, offloads_off=not args.keep_offloads)
    except ConfigError as e:
        print(f"shadowrec: {e}", file=sys.stderr)
        return 2
    json.dump(summary, sys.stdout, indent=2, sort_keys=True)
    print()
    if summary.get("error"):
        print(f"shadowrec: {summary['error']}", file=sys.stderr)
        return 1
    if summary.get("worker_failures"):
        print(f"shadowrec: {summary['worker_failures']} capture worker failure(s), exit codes "
              f"{summary['worker_exit_codes']} (see the log above)", file=sys.stderr)
        return 1
    return 0


def _replay(args) -> int:
    from capture.testing.replay import replay

    print(json.dumps(replay(args.file, args.iface, args.speed, args.topspeed)))
    return 0


def _vrrp(args) -> int:
    import signal
    import threading

    from appliance.standby.vrrp.scheduler import VrrpRunner
    from appliance.standby.vrrp.state import Event, VrrpConfig

    from capture.errors import ConfigError

    cfg = VrrpConfig(vrid=args.vrid, priority=args.priority, takeover_priority=args.takeover_priority,
                     advert_int_cs=round(args.advert_int * 100), preempt=not args.no_preempt)
    try:
        runner = VrrpRunner(cfg, args.iface, args.vip)
    except (ConfigError, OSError) as e:
        print(f"shadowrec: {e}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: runner.post(Event.SHUTDOWN))
    signal.signal(signal.SIGINT, lambda *_: runner.post(Event.SHUTDOWN))
    signal.signal(signal.SIGUSR1, lambda *_: print(json.dumps(runner.status()), file=sys.stderr, flush=True))
    # operator or test hooks for the health verdict: SIGUSR2 = primary dead, SIGHUP = primary alive
    signal.signal(signal.SIGUSR2, lambda *_: runner.post(Event.PRIMARY_DEAD))
    signal.signal(signal.SIGHUP, lambda *_: runner.post(Event.PRIMARY_ALIVE))
    if args.status_file:
        def dump():
            from capture.store.files import write_json_atomic
            while not runner.stop:
                write_json_atomic(args.status_file, runner.status())
                time.sleep(0.2)
        threading.Thread(target=dump, daemon=True).start()
    runner.run()
    print(json.dumps(runner.status()))
    return 0


def _run(args) -> int:
    from appliance.standby.takeover import Standby
    from appliance.standby.vrrp.state import VrrpConfig

    from capture.errors import ConfigError
    from capture.recorder import Options

    opts = Options(out_dir=args.out, sip_ports=tuple(args.sip_port or (5060,)), rtp_timeout_s=args.rtp_timeout,
                   durable_s=args.fsync_interval, state_file=os.path.join(args.out, "state-0.json"))
    os.makedirs(args.out, exist_ok=True)
    cfg = VrrpConfig(vrid=args.vrid, priority=args.priority, takeover_priority=args.takeover_priority,
                     advert_int_cs=round(args.advert_int * 100), preempt=not args.no_preempt)
    try:
        from capture.live.iface import SpanInterface
        with SpanInterface(args.span):
            standby = Standby(args.span, args.service, opts, cfg, args.vip, args.primary,
                              probe_interval=args.probe_interval)
            summary = standby.run(args.seconds)
    except ConfigError as e:
        print(f"shadowrec: {e}", file=sys.stderr)
        return 2
    json.dump(summary, sys.stdout, indent=2, sort_keys=True, default=str)
    print()
    return 0


def _lab(args) -> int:
    from appliance.lab.site import run_lab

    report = run_lab(args.kill, args.work, args.calls_before, args.calls_after, advert=args.advert_int,
                     probe=args.probe_interval)
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


def _lab_cucm(args) -> int:
    from appliance.lab.sim import Cucm

    plan = [tuple(float(x) for x in item.split(":")) for item in args.plan.split(";")]
    Cucm(args.ip, args.vip, args.phones.split(","), plan, args.manifest).run()
    return 0


def _lab_recorder(args) -> int:
    from appliance.lab.sim import run_recorder

    run_recorder(args.address)
    return 0


def _serve(args) -> int:
    from appliance.config import load
    from appliance.service import serve

    from capture.errors import ConfigError
    try:
        settings = load(args.config)
    except ConfigError as e:
        print(f"shadowrec: {e}", file=sys.stderr)
        return 2
    return serve(settings)


def _calls(args) -> int:
    from capture.store.catalog import Catalog

    path = os.path.join(args.out, "catalog.sqlite")
    if not os.path.exists(path):
        print(f"shadowrec: no catalog in {args.out}", file=sys.stderr)
        return 2
    cat = Catalog(path)
    rows = cat.query(since=args.since, until=args.until, dn=args.dn, device=args.device,
                     end_reason=args.end_reason,
                     primary_failed=True if args.primary_failed else None, limit=args.limit)
    cat.close()
    if args.json:
        json.dump(rows, sys.stdout, indent=2, sort_keys=True)
        print()
    else:
        for r in rows:
            failed = " primary-failed" if r["primary"]["failed_at"] else ""
            print(f"{r['id']}  {r['started_at']}  {r['duration_s'] or 0:8.3f}s  {r['near']['dn']:>10} "
                  f"<-> {r['far']['dn']:<10}  {r['codec'] or '-':5} {r['end_reason'] or r['state']}{failed}")
    return 0


def _synth(args) -> int:
    from capture.testing.synth import SynthSpec, generate

    spec = SynthSpec(calls=args.calls, duration_s=args.duration, spacing_s=args.spacing, codec=args.codec,
                     transport=args.transport, tcp_split=args.tcp_split, loss=args.loss, dup=args.dup,
                     reorder=args.reorder, jitter_ms=args.jitter_ms, dtmf=args.dtmf,
                     vlan=tuple(args.vlan or ()), ipv6=args.ipv6, fail_at_s=args.fail_at,
                     calls_after_fail=args.calls_after_fail, noise_flows=args.noise_flows,
                     garbage=args.garbage, seed=args.seed, keep_audio=False, pcapng=args.pcapng)
    calls = generate(args.output, spec)
    print(json.dumps({"output": args.output, "calls": len(calls),
                      "answered": sum(c.answered for c in calls)}))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="shadowrec", description="Passive recorder for Cisco Built-in-Bridge calls.")
    p.add_argument("--version", action="version", version=f"shadowrec {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log every parse error, not only the first 20")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    r = sub.add_parser("record", help="record every BiB call in capture files (pcap/pcapng)")
    r.add_argument("files", nargs="*", help="capture files; none: record an embedded synthetic demo")
    r.add_argument("--out", required=True, help="output directory (WAVs, sidecars, catalog.sqlite)")
    r.add_argument("--sip-port", type=int, action="append", help="SIP port (repeatable; default 5060)")
    r.add_argument("--rtp-timeout", type=float, default=30.0, help="end a call after this many silent seconds")
    r.add_argument("--pcap", action="store_true", help="also keep a raw pcap of every call")
    r.add_argument("--fsync-interval", type=float, default=0.0,
                   help="fdatasync recordings every N capture seconds and when a call ends "
                        "(default 0: never; a killed process still leaves valid files, power loss may not)")
    r.set_defaults(func=_record)

    k = sub.add_parser("capture", help="record live from a SPAN interface until SIGTERM/SIGINT")
    k.add_argument("--iface", required=True, help="the SPAN (mirror) interface; needs no IP address")
    k.add_argument("--out", required=True, help="output directory (WAVs, sidecars, catalog.sqlite, status-N.json)")
    k.add_argument("--workers", type=int, default=1,
                   help="capture processes, one per core (default 1); one that dies is started again, "
                   "and the exit status is then 1")
    k.add_argument("--ring-mb", type=int, default=256, help="kernel ring per worker in MiB (default 256)")
    k.add_argument("--block-kb", type=int, default=1024, help="ring block size in KiB (default 1024)")
    k.add_argument("--queue-mb", type=int, default=64,
                   help="writes waiting for the disk, per worker, in MiB (default 64); beyond it capture "
                   "waits while its ring is under half full, then audio is dropped and counted")
    k.add_argument("--reserve-calls", type=_reserve, default=1024, metavar="CALLS",
                   help="audio rings allocated at start, per worker (default 1024: 32 MiB); set it to the "
                   "site's concurrent calls, so that a burst of new calls costs capture no page faults")
    k.add_argument("--filter", help="extra tcpdump filter ANDed with the built-in one (SIP, RTP, ICMP)")
    k.add_argument("--sip-port", type=int, action="append", help="SIP port (repeatable; default 5060)")
    k.add_argument("--rtp-timeout", type=float, default=30.0, help="end a call after this many silent seconds")
    k.add_argument("--pcap", action="store_true", help="also keep a raw pcap of every call")
    k.add_argument("--fsync-interval", type=float, default=5.0,
                   help="fdatasync recordings every N seconds and at each call's end (default 5)")
    k.add_argument("--keep-offloads", action="store_true", help="leave GRO/LRO as they are")
    k.add_argument("--seconds", type=float, help="stop after this many seconds (tests, benchmarks)")
    k.set_defaults(func=_capture)

    c = sub.add_parser("calls", help="list recorded calls from the catalog")
    c.add_argument("--out", required=True, help="output directory given to record")
    c.add_argument("--json", action="store_true", help="print a JSON array of call metadata")
    c.add_argument("--since", help="started at or after (ISO 8601 UTC, e.g. 2026-09-21T00:00:00Z)")
    c.add_argument("--until", help="started before (ISO 8601 UTC)")
    c.add_argument("--dn", help="directory number on either side")
    c.add_argument("--device", help="device name on either side (case-insensitive)")
    c.add_argument("--end-reason", choices=["bye", "rtp_timeout", "capture_end", "shutdown"])
    c.add_argument("--primary-failed", action="store_true", help="only calls that outlived the primary")
    c.add_argument("--limit", type=int)
    c.set_defaults(func=_calls)

    s = sub.add_parser("synth", help="write a synthetic BiB capture")
    s.add_argument("output")
    s.add_argument("--calls", type=int, default=10)
    s.add_argument("--duration", type=float, default=10.0, help="seconds per call")
    s.add_argument("--spacing", type=float, default=0.25, help="seconds between call starts")
    s.add_argument("--codec", choices=["PCMU", "PCMA", "G729"], default="PCMU")
    s.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    s.add_argument("--tcp-split", action="store_true")
    s.add_argument("--loss", type=float, default=0.0)
    s.add_argument("--dup", type=float, default=0.0)
    s.add_argument("--reorder", type=float, default=0.0)
    s.add_argument("--jitter-ms", type=float, default=0.0)
    s.add_argument("--dtmf", default="")
    s.add_argument("--vlan", type=int, action="append")
    s.add_argument("--ipv6", action="store_true")
    s.add_argument("--fail-at", type=float, help="the primary dies this many seconds in")
    s.add_argument("--calls-after-fail", type=int, default=0)
    s.add_argument("--noise-flows", type=int, default=0)
    s.add_argument("--garbage", type=int, default=0)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--pcapng", action="store_true")
    s.set_defaults(func=_synth)

    rp = sub.add_parser("replay", help="send a capture's frames out of an interface at their original pace")
    rp.add_argument("file")
    rp.add_argument("--iface", required=True)
    rp.add_argument("--speed", type=float, default=1.0, help="pace multiplier (default 1.0: real time)")
    rp.add_argument("--topspeed", action="store_true", help="send as fast as possible")
    rp.set_defaults(func=_replay)

    v = sub.add_parser("vrrp", help="be the VRRPv3 backup of the primary recorder's virtual IP (root)")
    v.add_argument("--iface", required=True, help="interface that shares the VIP's subnet with the primary")
    v.add_argument("--vrid", type=int, required=True, help="virtual router id (the primary's keepalived's)")
    v.add_argument("--vip", action="append", required=True, help="virtual address with prefix, e.g. 198.18.0.20/24")
    v.add_argument("--priority", type=int, default=50, help="normal priority, below the primary's (default 50)")
    v.add_argument("--takeover-priority", type=int, default=254,
                   help="priority advertised while the primary's recorder is dead (default 254)")
    v.add_argument("--advert-int", type=float, default=1.0, help="advertisement interval in seconds (default 1)")
    v.add_argument("--no-preempt", action="store_true")
    v.add_argument("--status-file", help="write the instance's status here five times a second")
    v.set_defaults(func=_vrrp)

    r2 = sub.add_parser("run", help="the standby: record from SPAN, take over the VIP and answer calls when the "
                                    "primary dies (root)")
    r2.add_argument("--span", required=True, help="the SPAN (mirror) interface")
    r2.add_argument("--service", required=True, help="the interface on the VIP's LAN (VRRP, SIP, RTP)")
    r2.add_argument("--vrid", type=int, required=True)
    r2.add_argument("--vip", action="append", required=True, help="virtual address with prefix")
    r2.add_argument("--primary", required=True, help="the primary recorder host's own address (health probes)")
    r2.add_argument("--out", required=True)
    r2.add_argument("--priority", type=int, default=50)
    r2.add_argument("--takeover-priority", type=int, default=254)
    r2.add_argument("--advert-int", type=float, default=1.0)
    r2.add_argument("--no-preempt", action="store_true")
    r2.add_argument("--probe-interval", type=float, default=0.2, help="seconds between OPTIONS probes")
    r2.add_argument("--sip-port", type=int, action="append")
    r2.add_argument("--rtp-timeout", type=float, default=30.0)
    r2.add_argument("--fsync-interval", type=float, default=5.0)
    r2.add_argument("--seconds", type=float)
    r2.set_defaults(func=_run)

    lb = sub.add_parser("lab", help="a whole site in namespaces; kill the primary mid-call and report (root)")
    lb.add_argument("--kill", choices=["crash", "host", "net"], default="crash",
                    help="crash: recorder process; host: all its processes and links; net: its switch port")
    lb.add_argument("--calls-before", type=int, default=4)
    lb.add_argument("--calls-after", type=int, default=3)
    lb.add_argument("--advert-int", type=float, default=1.0, help="VRRP advertisement interval (keepalived too)")
    lb.add_argument("--probe-interval", type=float, default=0.2, help="shadowrec's health probes (default 0.2 s)")
    lb.add_argument("--work", help="where recordings and logs go (default /tmp/shadowrec-lab-MODE)")
    lb.set_defaults(func=_lab)

    lc = sub.add_parser("lab-cucm", help=argparse.SUPPRESS)
    lc.add_argument("--ip", required=True)
    lc.add_argument("--vip", required=True)
    lc.add_argument("--phones", required=True)
    lc.add_argument("--plan", required=True)
    lc.add_argument("--manifest", required=True)
    lc.set_defaults(func=_lab_cucm)
    lr = sub.add_parser("lab-recorder", help=argparse.SUPPRESS)
    lr.add_argument("--address", required=True)
    lr.set_defaults(func=_lab_recorder)

    sv = sub.add_parser("serve", help="run the appliance (capture or standby, and the status API) as a service")
    sv.add_argument("--config", default=None,
                    help="TOML settings (default $SHADOWREC_CONFIG or /etc/shadowrec/shadowrec.toml); "
                         "SHADOWREC_<SECTION>__<KEY> variables override it")
    sv.set_defaults(func=_serve)

    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.verbose:
        from capture import recorder as pipeline
        pipeline.MAX_LOGGED_ERRORS = 1 << 60
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
