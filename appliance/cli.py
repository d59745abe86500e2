"""The ``shadowrec`` command: the product shell that composes the recorder (``capture``), the
standby (``appliance.standby``), the service and its API, and the lab.

Each command has a parser builder (``_add_NAME``) and a function (``_NAME``); recording commands
share one set of options, and ``recorder_options`` (``appliance.config``) is the one place where
settings become the recorder's ``Options``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

from capture import __version__
from capture.errors import ConfigError
from capture.sip.calls import EndReason

if TYPE_CHECKING:
    from capture.options import Options

Args = argparse.Namespace


# recording ------------------------------------------------------------------------------------
def _recording_args(p: argparse.ArgumentParser, fsync_default: float) -> None:
    """The options every recording command shares (their dests are RecordingSettings' names)."""
    p.add_argument("--out", required=True, help="output directory (WAVs, sidecars, catalog.sqlite)")
    p.add_argument(
        "--sip-port", dest="sip_ports", type=int, action="append", help="SIP port (repeatable; default 5060)"
    )
    p.add_argument(
        "--sip-tls-port",
        dest="sip_tls_ports",
        type=int,
        action="append",
        help="SIP over TLS port (repeatable; default 5061): its calls cannot be read, but RTP to a recorder "
        "serving it (give its --recorder-addr) is recorded as a call of RTP alone, marked encrypted",
    )
    p.add_argument(
        "--rtp-timeout",
        dest="rtp_timeout_s",
        type=float,
        default=30.0,
        help="end a call after this many silent seconds (default 30)",
    )
    p.add_argument(
        "--fsync-interval",
        dest="fsync_interval_s",
        type=float,
        default=fsync_default,
        help=f"fdatasync recordings every N seconds and at each call's end (default {fsync_default:g}"
        + ("; 0: never; a killed process still leaves valid files, power loss may not)" if not fsync_default else ")"),
    )
    p.add_argument(
        "--min-free-mb",
        dest="min_free_mb",
        type=int,
        default=64,
        help="below this much free space the disk counts as full: calls and their metadata are kept, "
        "their audio is a counted gap until space returns (default 64)",
    )
    p.add_argument(
        "--recorder-addr",
        dest="recorder_addrs",
        action="append",
        default=[],
        metavar="IP",
        help="a recorder's IPv4 address (repeatable): RTP to it from calls up before the start is kept "
        "until their SIP shows (a re-INVITE); addresses SIP shows are added by themselves",
    )
    _catalog_arg(
        p,
        "a fleet catalog on PostgreSQL (postgresql://user:password@host/db): the calls go there too, "
        "one row per call whichever appliances recorded it; they wait in the local catalog while it is unreachable",
    )
    p.add_argument(
        "--appliance",
        default=socket.gethostname(),
        help="this appliance's name in the fleet catalog (default: the host name)",
    )
    p.add_argument(
        "--local-format",
        choices=["wav", "g711"],
        default="wav",
        help="wav: 16-bit PCM (default); g711: a G.711 call's WAV keeps the phones' µ-law/A-law bytes "
        "(half the disk; other codecs stay PCM)",
    )


def _catalog_arg(p: argparse.ArgumentParser, text: str) -> None:
    p.add_argument("--catalog", metavar="URL", type=_catalog_url, help=text)


def _catalog_url(text: str) -> str:
    from appliance.config import check_catalog_url

    try:
        return str(check_catalog_url(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _options(args: Args, **extra: Any) -> Options:
    """The recorder's Options from the shared recording options (pydantic is imported here, not at
    start-up: it cost every command, the lab's own actors included, 0.2 s)."""
    from pydantic import ValidationError

    from appliance.config import RecordingSettings, recorder_options, settings_error

    try:
        settings = RecordingSettings(
            out=args.out,
            sip_ports=args.sip_ports or [5060],
            sip_tls_ports=args.sip_tls_ports or [5061],
            rtp_timeout_s=args.rtp_timeout_s,
            fsync_interval_s=args.fsync_interval_s,
            keep_pcap=getattr(args, "keep_pcap", False),
            queue_mb=getattr(args, "queue_mb", 64),
            reserve_calls=getattr(args, "reserve_calls", 0),
            min_free_mb=args.min_free_mb,
            local_format=args.local_format,
            recorder_addrs=args.recorder_addrs,
        )
    except ValidationError as e:
        raise ConfigError(settings_error("options", e)) from None
    return recorder_options(settings, **extra)


def _add_record(sub: Any) -> None:
    r = sub.add_parser("record", help="record every BiB call in capture files (pcap/pcapng)")
    r.add_argument("files", nargs="*", help="capture files; none: record an embedded synthetic demo")
    _recording_args(r, 0.0)
    r.add_argument("--pcap", dest="keep_pcap", action="store_true", help="also keep a raw pcap of every call")
    r.set_defaults(func=_record)


def _record(args: Args) -> int:
    from capture.recorder import Recorder
    from capture.testing.synth import demo

    opts = _options(args)  # checked before anything is written
    files = list(args.files)
    if not files:
        files = [demo(args.out)]
        print(
            f"no capture given: recording the embedded demo {files[0]} (6 BiB calls, primary dies at 5 s)",
            file=sys.stderr,
        )
    rec = Recorder(opts)
    t = time.perf_counter()
    for f in files:
        rec.record_file(f)
    summary = rec.finish()
    summary["seconds"] = round(time.perf_counter() - t, 3)
    if args.catalog:
        from appliance.fleet.push import push_now

        summary["catalog"] = fleet = push_now(args.out, args.catalog, args.appliance)
        if fleet["waiting"]:
            print(
                f"shadowrec: the fleet catalog {fleet['url']} is unreachable ({fleet['last_error']}): "
                f"{fleet['waiting']} changes wait in {args.out}/catalog.sqlite for the next push "
                "(any record, capture, run or serve with this catalog)",
                file=sys.stderr,
            )
    rc = _print(summary)
    disk = rec.calls.space
    if disk.times_full or rec.io.errors:
        print(
            f"shadowrec: the disk holding {args.out} was full or failing ({disk.error or rec.io.last_error}): "
            f"{disk.gap_frames / 8000:.1f} s of audio were not written; every call's metadata was kept; "
            "free some space and run the same command again to record them whole",
            file=sys.stderr,
        )
        return 3
    return rc


def _reserve(text: str) -> int:
    """--reserve-calls: 0-100,000 calls (the appliance's capture.reserve_calls bounds)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of calls") from None
    if not 0 <= n <= 100_000:
        raise argparse.ArgumentTypeError(f"{n} is outside 0-100000")
    return n


def _add_capture(sub: Any) -> None:
    k = sub.add_parser("capture", help="record live from a SPAN interface until SIGTERM/SIGINT")
    k.add_argument("--iface", required=True, help="the SPAN (mirror) interface; needs no IP address")
    _recording_args(k, 5.0)
    k.add_argument(
        "--workers",
        type=int,
        default=1,
        help="capture processes, one per core (default 1); one that dies is started again, "
        "and the exit status is then 1",
    )
    k.add_argument("--ring-mb", type=int, default=256, help="kernel ring per worker in MiB (default 256)")
    k.add_argument("--block-kb", type=int, default=1024, help="ring block size in KiB (default 1024)")
    k.add_argument(
        "--queue-mb",
        type=int,
        default=64,
        help="writes waiting for the disk, per worker, in MiB (default 64); beyond it capture "
        "waits while its ring is under half full, then audio is dropped and counted",
    )
    k.add_argument(
        "--reserve-calls",
        type=_reserve,
        default=1024,
        metavar="CALLS",
        help="audio rings allocated at start, per worker (default 1024: 32 MiB); set it to the "
        "site's concurrent calls, so that a burst of new calls costs capture no page faults",
    )
    k.add_argument("--filter", help="extra tcpdump filter ANDed with the built-in one (SIP, RTP, ICMP)")
    k.add_argument("--pcap", dest="keep_pcap", action="store_true", help="also keep a raw pcap of every call")
    k.add_argument("--keep-offloads", action="store_true", help="leave GRO/LRO as they are")
    k.add_argument("--seconds", type=float, help="stop after this many seconds (tests, benchmarks)")
    k.set_defaults(func=_capture)


def _capture(args: Args) -> int:
    from appliance.fleet.push import beside
    from capture.live.pool import capture

    opts = _options(args)
    with beside(args.out, args.catalog, args.appliance):
        summary = capture(
            args.iface,
            opts,
            workers=args.workers,
            ring_mb=args.ring_mb,
            block_kb=args.block_kb,
            bpf=args.filter,
            max_seconds=args.seconds,
            offloads_off=not args.keep_offloads,
        )
    _print(summary)
    if summary.get("error"):
        print(f"shadowrec: {summary['error']}", file=sys.stderr)
        return 1
    if summary.get("worker_failures"):
        print(
            f"shadowrec: {summary['worker_failures']} capture worker failure(s), exit codes "
            f"{summary['worker_exit_codes']} (see the log above)",
            file=sys.stderr,
        )
        return 1
    return 0


# the catalog ------------------------------------------------------------------------------------
def _add_calls(sub: Any) -> None:
    c = sub.add_parser("calls", help="list recorded calls from the catalog (this appliance's, or the fleet's)")
    c.add_argument("--out", help="output directory given to record (its catalog.sqlite)")
    _catalog_arg(c, "the fleet catalog on PostgreSQL instead: each call once, with its copies (every appliance's)")
    c.add_argument("--json", action="store_true", help="print a JSON array of call metadata")
    c.add_argument("--since", help="started at or after (ISO 8601 UTC, e.g. 2026-09-21T00:00:00Z)")
    c.add_argument("--until", help="started before (ISO 8601 UTC)")
    c.add_argument("--dn", help="directory number on either side")
    c.add_argument("--device", help="device name on either side (case-insensitive)")
    c.add_argument("--end-reason", choices=[r.value for r in EndReason if r is not EndReason.REJECTED])
    c.add_argument("--primary-failed", action="store_true", help="only calls that outlived the primary")
    c.add_argument("--undelivered", action="store_true", help="only calls an archive target has not confirmed")
    c.add_argument("--limit", type=int)
    c.set_defaults(func=_calls)


def _calls(args: Args) -> int:
    from appliance.delivery.queue import PENDING_SQL, with_delivery
    from capture.store.catalog import Catalog

    filters = {
        "since": args.since, "until": args.until, "dn": args.dn, "device": args.device,
        "end_reason": args.end_reason, "primary_failed": True if args.primary_failed else None, "limit": args.limit,
    }  # fmt: skip
    if args.catalog:
        rows = _fleet_calls(args.catalog, filters, args.undelivered)
    else:
        if not args.out:
            raise ConfigError("calls needs --out (this appliance's catalog) or --catalog (the fleet's)")
        path = os.path.join(args.out, "catalog.sqlite")
        if not os.path.exists(path):
            raise ConfigError(f"no catalog in {args.out}")
        cat = Catalog(path)
        rows = with_delivery(cat.db, cat.query(**filters, extra=PENDING_SQL if args.undelivered else None))
        cat.close()
    if args.json:
        return _print(rows)
    for r in rows:
        failed = " primary-failed" if r["primary"]["failed_at"] else ""
        print(
            f"{r['id']}  {r['started_at']}  {r['duration_s'] or 0:8.3f}s  {r['near']['dn']:>10} "
            f"<-> {r['far']['dn']:<10}  {r['codec'] or '-':5} {r['end_reason'] or r['state']}{failed}"
        )
    return 0


def _fleet_calls(url: str, filters: dict[str, Any], undelivered: bool) -> list[dict[str, Any]]:
    from appliance.fleet.store import FleetCatalog, redact

    if undelivered:
        raise ConfigError("--undelivered reads this appliance's delivery queue: give --out, not --catalog")
    fleet = FleetCatalog(url)
    try:
        return fleet.query(**filters)
    except Exception as e:  # psycopg's OperationalError, the pool's timeout: one line, exit 2
        raise ConfigError(f"the fleet catalog {redact(url)}: {e}") from None
    finally:
        fleet.close()


# delivery ---------------------------------------------------------------------------------------
def _add_archive(sub: Any) -> None:
    a = sub.add_parser(
        "archive",
        help="deliver recordings to archive targets, verified (file:///path, s3://bucket/prefix)",
        description="Send each complete call's WAV and sidecar to every target; a call leaves the queue "
        "for a target only once the copy there was verified (size and SHA-256). Failures are retried "
        "with backoff, across runs.",
    )
    a.add_argument("--out", required=True, help="the recordings directory (record/capture/serve's --out)")
    a.add_argument("--to", action="append", default=[], metavar="URL", help="a target (repeatable)")
    a.add_argument(
        "--forget", metavar="URL",
        help="retire a target: drop its queue rows, so retention no longer keeps calls for it, and exit",
    )  # fmt: skip
    a.add_argument(
        "--policy", choices=["all", "gaps"], default="all",
        help="all calls, or only those the primary did not record whole (default all)",
    )  # fmt: skip
    a.add_argument(
        "--format", choices=["wav", "g711", "flac", "opus"], default="wav",
        help="the copies' format: wav as recorded, g711 (µ-law/A-law in a WAV), flac, opus (default wav)",
    )  # fmt: skip
    a.add_argument("--once", action="store_true", help="try everything pending once, then exit (0: all delivered)")
    a.add_argument("--concurrency", type=int, default=2, help="transfers at once per target (default 2)")
    a.add_argument("--bandwidth-mbps", type=float, help="at most this many megabits/s per target")
    a.add_argument("--interval", type=float, default=5.0, help="seconds between passes without --once")
    a.set_defaults(func=_archive)


def _archive(args: Args) -> int:
    import signal

    from appliance.delivery.deliver import Deliverer
    from appliance.delivery.formats import Format
    from appliance.delivery.policy import Policy

    if not os.path.isdir(args.out):
        raise ConfigError(f"{args.out} is not a recordings directory")
    if args.forget:
        from appliance.delivery.queue import Queue
        from appliance.delivery.targets import target_for

        q = Queue(os.path.join(args.out, "catalog.sqlite"))
        try:
            name = target_for(args.forget).url
        except ValueError as e:
            raise ConfigError(str(e)) from None
        pending = q.forget(name)
        q.close()
        return _print({"forgotten": name, "calls_it_had_not_confirmed": pending})
    if not args.to:
        raise ConfigError("give a target: --to URL")
    try:
        d = Deliverer(
            args.out,
            args.to,
            Policy(args.policy),
            concurrency=args.concurrency,
            bytes_per_s=args.bandwidth_mbps * 125_000 if args.bandwidth_mbps else None,
            fmt=Format(args.format),
        )
    except ValueError as e:
        raise ConfigError(str(e)) from None
    try:
        if args.once:
            out = d.run_once(every_pending=True)
            print(json.dumps({"delivered": out.delivered, "bytes": out.bytes}))
            for url, (n, why) in out.failed.items():
                print(f"shadowrec: {url}: {n} call(s) not delivered: {why}", file=sys.stderr)
            return 1 if out.failed else 0
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        while not stop:
            d.run_once()
            for _ in range(int(args.interval * 10)):
                if stop:
                    break
                time.sleep(0.1)
        return 0
    finally:
        d.close()


def _add_prune(sub: Any) -> None:
    pr = sub.add_parser(
        "prune",
        help="remove old recordings: by age, total size and a free-space floor, oldest first",
        description="Never a call still recording, nor one an archive target (shadowrec archive) has not "
        "confirmed, except under the free-space floor as a last resort (logged and counted). Calls the "
        "primary did not record whole are kept three times longer by default.",
    )
    pr.add_argument("--out", required=True, help="the recordings directory")
    pr.add_argument("--max-age", type=float, metavar="DAYS", help="remove calls older than this")
    pr.add_argument("--max-age-gaps", type=float, metavar="DAYS", help="for calls the primary missed (3 x --max-age)")
    pr.add_argument("--max-bytes", metavar="SIZE", help="keep the recordings under this size (e.g. 500G)")
    pr.add_argument("--min-free", metavar="SIZE", help="keep this much of the disk free (e.g. 20G)")
    pr.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")
    pr.set_defaults(func=_prune)


def _prune(args: Args) -> int:
    from appliance.retention.plan import Limits
    from appliance.retention.prune import parse_size, prune

    if not os.path.exists(os.path.join(args.out, "catalog.sqlite")):
        raise ConfigError(f"{args.out} is not a recordings directory (no catalog.sqlite)")
    try:
        limits = Limits(
            max_age_days=args.max_age,
            max_age_gap_days=args.max_age_gaps,
            max_bytes=parse_size(args.max_bytes) if args.max_bytes else None,
            min_free_bytes=parse_size(args.min_free) if args.min_free else None,
        )
    except ValueError as e:
        raise ConfigError(str(e)) from None
    r = prune(args.out, limits, dry_run=args.dry_run)
    if args.dry_run:
        return _print({"would_remove": [{"id": i, "reason": why} for i, why in r.planned]})
    _print({"removed": r.removed, "bytes": r.bytes, "by_reason": dict(r.by_reason), "orphan_rows": r.orphans,
            "errors": r.errors})  # fmt: skip
    return 1 if r.errors else 0


# tools for tests and demos ----------------------------------------------------------------------
def _add_synth(sub: Any) -> None:
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


def _synth(args: Args) -> int:
    from capture.testing.synth import SynthSpec, generate

    spec = SynthSpec(
        calls=args.calls,
        duration_s=args.duration,
        spacing_s=args.spacing,
        codec=args.codec,
        transport=args.transport,
        tcp_split=args.tcp_split,
        loss=args.loss,
        dup=args.dup,
        reorder=args.reorder,
        jitter_ms=args.jitter_ms,
        dtmf=args.dtmf,
        vlan=tuple(args.vlan or ()),
        ipv6=args.ipv6,
        fail_at_s=args.fail_at,
        calls_after_fail=args.calls_after_fail,
        noise_flows=args.noise_flows,
        garbage=args.garbage,
        seed=args.seed,
        keep_audio=False,
        pcapng=args.pcapng,
    )
    calls = generate(args.output, spec)
    print(json.dumps({"output": args.output, "calls": len(calls), "answered": sum(c.answered for c in calls)}))
    return 0


def _add_replay(sub: Any) -> None:
    rp = sub.add_parser("replay", help="send a capture's frames out of an interface at their original pace")
    rp.add_argument("file")
    rp.add_argument("--iface", required=True)
    rp.add_argument("--speed", type=float, default=1.0, help="pace multiplier (default 1.0: real time)")
    rp.add_argument("--topspeed", action="store_true", help="send as fast as possible")
    rp.set_defaults(func=_replay)


def _replay(args: Args) -> int:
    from capture.testing.replay import replay

    print(json.dumps(replay(args.file, args.iface, args.speed, args.topspeed)))
    return 0


# the standby ----------------------------------------------------------------------------------
def _vrrp_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vrid", type=int, required=True, help="virtual router id (the primary's keepalived's)")
    p.add_argument("--vip", action="append", required=True, help="virtual address with prefix, e.g. 198.18.0.20/24")
    p.add_argument("--priority", type=int, default=50, help="normal priority, below the primary's (default 50)")
    p.add_argument(
        "--takeover-priority",
        type=int,
        default=254,
        help="priority advertised while the primary's recorder is dead (default 254)",
    )
    p.add_argument("--advert-int", type=float, default=1.0, help="advertisement interval in seconds (default 1)")
    p.add_argument("--no-preempt", action="store_true")
    p.add_argument(
        "--vrrp-peer",
        action="append",
        default=[],
        help="an address whose adverts are believed (repeatable; on the interface's subnet); "
        "`run` defaults to --primary",
    )


def _vrrp_config(args: Args) -> Any:
    from appliance.standby.vrrp.state import VrrpConfig

    return VrrpConfig(
        vrid=args.vrid,
        priority=args.priority,
        takeover_priority=args.takeover_priority,
        advert_int_cs=round(args.advert_int * 100),
        preempt=not args.no_preempt,
    )


def _add_vrrp(sub: Any) -> None:
    v = sub.add_parser("vrrp", help="be the VRRPv3 backup of the primary recorder's virtual IP (root)")
    v.add_argument("--iface", required=True, help="interface that shares the VIP's subnet with the primary")
    _vrrp_args(v)
    v.add_argument("--status-file", help="write the instance's status here five times a second")
    v.set_defaults(func=_vrrp)


def _vrrp(args: Args) -> int:
    import signal
    import threading

    from appliance.standby.vrrp.scheduler import VrrpRunner
    from appliance.standby.vrrp.state import Event
    from capture.store.files import write_json_atomic

    if not args.vrrp_peer:
        raise ConfigError("give --vrrp-peer: the primary's own address, whose adverts are believed")
    try:
        runner = VrrpRunner(_vrrp_config(args), args.iface, args.vip, args.vrrp_peer)
    except OSError as e:
        raise ConfigError(str(e)) from None
    signal.signal(signal.SIGTERM, lambda *_: runner.post(Event.SHUTDOWN))
    signal.signal(signal.SIGINT, lambda *_: runner.post(Event.SHUTDOWN))
    signal.signal(signal.SIGUSR1, lambda *_: print(json.dumps(runner.status()), file=sys.stderr, flush=True))
    # operator or test hooks for the health verdict: SIGUSR2 = primary dead, SIGHUP = primary alive
    signal.signal(signal.SIGUSR2, lambda *_: runner.post(Event.PRIMARY_DEAD))
    signal.signal(signal.SIGHUP, lambda *_: runner.post(Event.PRIMARY_ALIVE))
    if args.status_file:

        def dump() -> None:
            while not runner.stop:
                write_json_atomic(args.status_file, runner.status())
                time.sleep(0.2)

        threading.Thread(target=dump, daemon=True).start()
    runner.run()
    print(json.dumps(runner.status()))
    return 0


def _add_run(sub: Any) -> None:
    r2 = sub.add_parser(
        "run", help="the standby: record from SPAN, take over the VIP and answer calls when the primary dies (root)"
    )
    r2.add_argument("--span", required=True, help="the SPAN (mirror) interface")
    r2.add_argument("--service", required=True, help="the interface on the VIP's LAN (VRRP, SIP, RTP)")
    r2.add_argument("--primary", required=True, help="the primary recorder host's own address (health probes)")
    _vrrp_args(r2)
    r2.add_argument("--probe-interval", type=float, default=0.2, help="seconds between OPTIONS probes")
    r2.add_argument(
        "--fellow",
        action="append",
        default=[],
        metavar="IP",
        help="another shadowrec appliance guarding the same primary (repeatable; an appliance pair): its VRRP "
        "adverts are obeyed by priority while the primary is dead; give each a different --takeover-priority",
    )
    r2.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="PRIMARY,VIP/LEN,VRID[,PRIORITY]",
        help="one more primary recorder to guard (repeatable): its own address, VIP and VRRP id (and priority); "
        "each has its own VRRP instance, probe and SIP server, over one capture",
    )
    r2.add_argument(
        "--sip-peer",
        action="append",
        default=[],
        help="an address or network the SIP server answers: CUCM (repeatable); none: the addresses seen on "
        "the SPAN port sending BiB INVITEs to the primary",
    )
    r2.add_argument(
        "--max-call", type=float, default=4 * 3600.0, help="clear a dialog answered here after this many seconds"
    )
    r2.add_argument("--rtp-ports", default="16384-49150", help="RTP ports offered in answers (default 16384-49150)")
    r2.add_argument(
        "--no-rtcp-sockets",
        action="store_true",
        help="hold a socket on each offered RTP port only, not on its RTCP port (half the descriptors)",
    )
    _recording_args(r2, 5.0)
    r2.add_argument("--seconds", type=float)
    r2.set_defaults(func=_run)


def _also(args: Args) -> list[dict[str, Any]]:
    """``--also``: the first primary (``--primary``, ``--vip``, ``--vrid``) and the others, as
    ``standby.primaries``; none given: no list (the one primary)."""
    if not args.also:
        return []
    out: list[dict[str, Any]] = [{"primary": args.primary, "vips": args.vip, "vrid": args.vrid}]
    for text in args.also:
        parts = text.split(",")
        if len(parts) not in (3, 4) or not all(p.isascii() and p.strip() for p in parts):
            raise ConfigError(f"--also {text!r}: PRIMARY,VIP/LEN,VRID[,PRIORITY]")
        entry: dict[str, Any] = {"primary": parts[0], "vips": [parts[1]], "vrid": parts[2]}
        if len(parts) == 4:
            entry["priority"] = parts[3]
        out.append(entry)
    return out


def _run(args: Args) -> int:
    from pydantic import ValidationError

    from appliance.config import StandbySettings, settings_error, standby_addrs
    from appliance.standby.takeover import Standby
    from capture.live.iface import SpanInterface

    opts = _options(args, state_file=os.path.join(args.out, "state-0.json"))
    try:
        lo, _, hi = args.rtp_ports.partition("-")
        sb = StandbySettings(
            enabled=True,
            service=args.service,
            vrid=args.vrid,
            vips=args.vip,
            primary=args.primary,
            priority=args.priority,
            takeover_priority=args.takeover_priority,
            advert_int_s=args.advert_int,
            preempt=not args.no_preempt,
            probe_interval_s=args.probe_interval,
            vrrp_peers=args.vrrp_peer,
            sip_peers=args.sip_peer,
            max_call_s=args.max_call,
            rtp_ports=[lo, hi],
            hold_rtcp_ports=not args.no_rtcp_sockets,
            primaries=_also(args),
            fellows=args.fellow,
        )
    except ValidationError as e:
        raise ConfigError(settings_error("options", e)) from None
    os.makedirs(args.out, exist_ok=True)
    from appliance.fleet.push import beside

    with SpanInterface(args.span), beside(args.out, args.catalog, args.appliance):
        opts.recorder_addrs = tuple(dict.fromkeys(opts.recorder_addrs + standby_addrs(sb)))
        summary = Standby(args.span, opts, sb).run(args.seconds)
    _print(summary)
    return 1 if summary.get("error") else 0


# the lab and the service ------------------------------------------------------------------------
def _add_lab(sub: Any) -> None:
    lb = sub.add_parser("lab", help="a whole site in namespaces; kill the primary mid-call and report (root)")
    lb.add_argument(
        "--kill",
        choices=["crash", "host", "net"],
        default="crash",
        help="crash: recorder process; host: all its processes and links; net: its switch port",
    )
    lb.add_argument("--calls-before", type=int, default=4)
    lb.add_argument("--calls-after", type=int, default=3)
    lb.add_argument("--advert-int", type=float, default=1.0, help="VRRP advertisement interval (keepalived too)")
    lb.add_argument("--probe-interval", type=float, default=0.2, help="shadowrec's health probes (default 0.2 s)")
    lb.add_argument("--work", help="where recordings and logs go (default /tmp/shadowrec-lab-MODE)")
    lb.set_defaults(func=_lab)
    # the lab's own actors, started by it inside its namespaces
    lc = sub.add_parser("lab-cucm")  # no help=: not listed in --help
    for name in ("--ip", "--vip", "--phones", "--plan", "--manifest"):
        lc.add_argument(name, required=True)
    lc.add_argument("--first-index", type=int, default=0)  # a second CUCM's calls: their own refci and DNs
    lc.set_defaults(func=_lab_cucm)
    lr = sub.add_parser("lab-recorder")
    lr.add_argument("--address", required=True)
    lr.set_defaults(func=_lab_recorder)


def _lab(args: Args) -> int:
    from appliance.lab.site import run_lab

    report = run_lab(
        args.kill, args.work, args.calls_before, args.calls_after, advert=args.advert_int, probe=args.probe_interval
    )
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


def _lab_cucm(args: Args) -> int:
    from appliance.lab.sim import Cucm

    plan = [tuple(float(x) for x in item.split(":")) for item in args.plan.split(";")]
    Cucm(args.ip, args.vip, args.phones.split(","), plan, args.manifest, args.first_index).run()
    return 0


def _lab_recorder(args: Args) -> int:
    from appliance.lab.sim import run_recorder

    run_recorder(args.address)
    return 0


def _add_serve(sub: Any) -> None:
    sv = sub.add_parser("serve", help="run the appliance (capture or standby, and the status API) as a service")
    sv.add_argument(
        "--config",
        default=None,
        help="TOML settings (default $SHADOWREC_CONFIG or /etc/shadowrec/shadowrec.toml); "
        "SHADOWREC_<SECTION>__<KEY> variables override it",
    )
    _catalog_arg(
        sv, "the fleet catalog on PostgreSQL ([catalog] url): calls pushed there, and the fleet's listed by the API"
    )
    sv.set_defaults(func=_serve)


def _serve(args: Args) -> int:
    from appliance.config import load
    from appliance.service import serve

    settings = load(args.config)
    if args.catalog:
        settings.catalog = settings.catalog.model_copy(update={"url": args.catalog})
    return serve(settings)


# the command ----------------------------------------------------------------------------------
def _print(obj: Any) -> int:
    json.dump(obj, sys.stdout, indent=2, sort_keys=True, default=str)
    print()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shadowrec", description="Passive recorder for Cisco Built-in-Bridge calls.")
    p.add_argument("--version", action="version", version=f"shadowrec {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log every parse error, not only the first 20")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for add in (
        _add_record,
        _add_capture,
        _add_calls,
        _add_archive,
        _add_prune,
        _add_synth,
        _add_replay,
        _add_vrrp,
        _add_run,
        _add_lab,
        _add_serve,
    ):
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.umask(os.umask(0o027) | 0o027)  # recordings are private: files 0640, directories 0750 at most
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.verbose:
        from capture import faults

        faults.DEFAULT_FIRST = 1 << 60
    try:
        return int(args.func(args))
    except ConfigError as e:  # settings or an interface that cannot work: one line, exit 2
        print(f"shadowrec: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
