"""Calls in a codec the engine does not decode (``capture.media.codecs``), decoded right after
they end, from the packets kept in their pcap, so that capture never waits for it. FFmpeg's
decoders get what the world sent, so they run in a child process of their own: if one dies on a
packet (a crash in C), that call keeps its silent WAV and raw pcap, the failure is counted, and
the next call gets a new child. The decoded WAV replaces the silent one atomically (a temporary
file, renamed: 0640); the sidecar and the catalog then say ``decoded: true``, the rate, and what
each stream's decoding came to.

Each job is kept in a file of its own (``DIR/decoding/<run>/<call id>.json``, 0640) from its
submission until its result is applied, so a recorder killed (SIGKILL, power loss) while calls
wait for decoding decodes them when it starts again (``resume``); a job whose decoding failed is
not tried again."""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import numpy as np

from capture.media import wav
from capture.media.codecs import CODECS, decode_stream, resample
from capture.sip.sdp import fmtp_params as sdp_params
from capture.store.files import to_json
from capture.store.sidecar import row_of

if TYPE_CHECKING:
    from capture.options import Options
    from capture.store.outputs import CallRecording, Recordings

log = logging.getLogger("shadowrec")
NS = 1_000_000_000
G711 = ("PCMU", "PCMA")


@dataclass(frozen=True)
class Job:  # (kept as JSON while it waits: ``to_state``, ``from_state``)
    call_id: str
    wav_path: str
    pcap_path: str
    meta_path: str
    start_ns: int
    frames: int  # the call's length at 8 kHz
    streams: dict[str, str]  # recorder address:port -> role
    codecs: dict[str, tuple[str, int]]  # role -> (codec, audio payload type)
    fmtp: dict[str, str] | None = None  # role -> its a=fmtp parameters

    def to_state(self) -> dict[str, Any]:
        return dict(self.__dict__, codecs={r: list(c) for r, c in self.codecs.items()})

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> Job:
        return cls(**dict(d, codecs={r: (str(c), int(pt)) for r, (c, pt) in d["codecs"].items()}))


def job_for(rs: Recordings, rec: CallRecording) -> Job | None:
    """A decoding job for an ended call, if it has a codec to decode and its packets were kept."""
    codecs = {r: (d.codec, d.audio_pt) for r, d in rec.call.dialogs.items() if d.codec}
    if not rec.pcap_rel or not any(c in CODECS for c, _ in codecs.values()) or rec.end_frames is None:
        return None
    if any(d.secure and d.crypto is None for d in rec.call.dialogs.values()):
        return None  # SRTP that could not be decrypted: nothing to decode
    out = rs.opts.out_dir
    streams = {s.dst: s.role for s in rec.finished_streams}
    fmtp = {r: d.fmtp for r, d in rec.call.dialogs.items()}
    return Job(rec.call.id, os.path.join(out, rec.wav_rel), os.path.join(out, rec.pcap_rel), rec.meta_path,
               rec.call.started_ns, rec.end_frames, streams, codecs, fmtp)  # fmt: skip


def _packets(job: Job) -> dict[str, list[tuple[int, int, int, int, bytes]]]:
    """Each role's RTP packets in the call's pcap: (arrival ns, seq, timestamp, payload type, payload)."""
    from capture import speedups
    from capture.errors import ParseError
    from capture.wire import rtp
    from capture.wire.frame import PROTO_UDP, flow_key, key_to_str

    impl = speedups.default()
    buf = open(job.pcap_path, "rb").read()
    out: dict[str, list] = {r: [] for r in job.codecs}
    offs, lens, tss, lts = impl.Indexer(buf).next_batch(1 << 30)
    for o, n, ts, lt in zip(offs.tolist(), lens.tolist(), tss.tolist(), lts.tolist()):
        try:
            f = impl.packet.parse(buf[o : o + n], lt)
            if f.proto != PROTO_UDP or f.frag_id >= 0:
                continue
            role = job.streams.get(key_to_str(flow_key(f.dst, f.dport)))
            if role is None:
                continue
            p = buf[o + f.payload_off : o + f.payload_off + f.payload_len]
            h = rtp.parse(p)
        except ParseError:
            continue
        out[role].append(
            (ts, h.sequence, h.timestamp, h.payload_type, p[h.payload_offset : h.payload_offset + h.payload_length])
        )
    return out


def decode_call(job: Job) -> dict[str, Any]:
    """Decode the call and replace its WAV; returns what its sidecar is to say."""
    import soundfile as sf

    rate = max((CODECS[c].rate for c, _ in job.codecs.values() if c in CODECS), default=wav.RATE)
    length = job.frames * rate // wav.RATE
    packets = _packets(job)
    old = None
    channels, streams = [], {}
    for ch, role in enumerate(("near", "far")):
        codec, pt = job.codecs.get(role, ("", -1))
        spec = CODECS.get(codec)
        if spec is not None:
            params = sdp_params((job.fmtp or {}).get(role, ""))
            res = decode_stream(
                packets.get(role, []), spec, pt, job.start_ns, job.frames * spec.rate // wav.RATE, params
            )
            a, streams[role] = res.samples, res.to_dict()
        elif codec in G711:  # decoded by the engine already: its channel of the WAV
            if old is None:
                old = sf.read(job.wav_path, dtype="int16", always_2d=True)[0]
            a = old[:, ch]
        else:
            a = np.zeros(job.frames, dtype=np.int16)
        a = resample(a, spec.rate if spec else wav.RATE, rate)
        channels.append(np.pad(a, (0, max(0, length - len(a))))[:length])
    tmp = job.wav_path + ".decoding"
    sf.write(tmp, np.stack(channels, axis=1), rate, subtype="PCM_16", format="WAV")
    os.chmod(tmp, 0o640)
    os.replace(tmp, job.wav_path)
    codecs = sorted({c for c, _ in job.codecs.values() if c in CODECS})
    return {"decoded": True, "sample_rate": rate, "frames": length, "encoding": "pcm16",
            "decoder": {"by": "ffmpeg", "codecs": codecs, "streams": streams}}  # fmt: skip


def serve(conn: Connection) -> None:
    """The child process: jobs in, results (or the error) out, until None or the pipe closes."""
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            conn.send(("ok", decode_call(job)))
        except Exception as e:
            conn.send(("error", f"{type(e).__name__}: {e}"))


class PostDecoder:
    """The decoding child process, the thread that feeds it, and the results handed back to the
    capture thread (``apply``)."""

    def __init__(self, target: Callable[[Connection], None] = serve, spool: str | None = None) -> None:
        self.target = target  # the child's loop (a test gives one that crashes)
        self.spool = spool  # where waiting jobs are kept (None: not kept)
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.done: list[tuple[Job, dict[str, Any] | None]] = []
        self.lock = threading.Lock()
        self.pending = 0
        self.thread: threading.Thread | None = None
        self.child: Any = None
        self.conn: Any = None
        self.child_deaths = 0

    def _spooled(self, job: Job) -> str | None:
        return os.path.join(self.spool, job.call_id + ".json") if self.spool else None

    def submit(self, job: Job, keep: bool = True) -> None:
        """Decode ``job`` on the decoder's thread; with ``keep``, its file first (a full disk: it
        is decoded all the same, only not again after a crash)."""
        path = self._spooled(job)
        if keep and path is not None:
            import json

            try:
                os.makedirs(self.spool or "", mode=0o750, exist_ok=True)
                tmp = path + ".tmp"
                with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640), "w") as f:
                    json.dump(job.to_state(), f)
                os.replace(tmp, path)
            except OSError as e:
                log.warning("decoding job of %s not kept: %s", job.call_id, e)
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="shadowrec-decoder", daemon=True)
            self.thread.start()
        with self.lock:
            self.pending += 1
        self.jobs.put(job)

    def _decode(self, job: Job) -> dict[str, Any] | None:
        """One job in the child (started, or started again, as needed)."""
        import multiprocessing as mp

        if self.child is None or not self.child.is_alive():
            ctx = mp.get_context("spawn")  # not fork: the recorder has threads
            self.conn, theirs = ctx.Pipe()
            self.child = ctx.Process(target=self.target, args=(theirs,), name="shadowrec-decode", daemon=True)
            self.child.start()
            theirs.close()
        try:
            self.conn.send(job)
            while not self.conn.poll(0.2):
                if not self.child.is_alive():
                    raise EOFError
            status, result = self.conn.recv()
        except (EOFError, OSError):
            self.child.join(1)
            self.child_deaths += 1
            log.error("the decoder died (exit %s) on call %s: it keeps its pcap", self.child.exitcode, job.call_id)
            self.child = None
            return None
        if status != "ok":
            log.error("decoding call %s: %s", job.call_id, result)
            return None
        return result

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            result = self._decode(job)
            with self.lock:
                self.done.append((job, result))
                self.pending -= 1
        if self.child is not None and self.child.is_alive():
            self.conn.send(None)
            self.child.join(5)

    def resume(self) -> int:
        """Submit again the jobs a killed run left (their WAV and pcap still there); returns how many."""
        import json

        if not self.spool or not os.path.isdir(self.spool):
            return 0
        n = 0
        for name in sorted(os.listdir(self.spool)):
            path = os.path.join(self.spool, name)
            try:
                with open(path) as f:
                    job = Job.from_state(json.load(f))
            except (OSError, ValueError, TypeError, KeyError) as e:
                log.warning("decoding job %s unreadable (%s): dropped", name, e)
                _unlink(path)
                continue
            if os.path.exists(job.wav_path) and os.path.exists(job.pcap_path):
                self.submit(job, keep=False)
                n += 1
            else:
                _unlink(path)
        return n

    def apply(self, rs: Recordings) -> int:
        """On the capture thread: each decoded call's sidecar and catalog row say so."""
        with self.lock:
            done, self.done = self.done, []
        for job, result in done:
            if (path := self._spooled(job)) is not None:
                _unlink(path)  # its result is applied below (its WAV was replaced already)
            if result is None:
                rs.counters["decode_failures"] += 1
                continue
            rs.counters["calls_decoded"] += 1
            rec = next((r for _, r in rs.closing if r.call.id == job.call_id), None)
            if rec is not None:  # still open for late evidence: its next sidecar carries it
                rec.decode, rec.dirty = result, True
                continue
            try:
                import json

                with open(job.meta_path) as f:
                    d = json.load(f) | result
            except (OSError, ValueError) as e:
                log.warning("sidecar of %s not updated after decoding: %s", job.call_id, e)
                continue
            text = to_json(d)
            rs.io.write_file(job.meta_path, (text + "\n").encode())
            rs.catalog.upsert(row_of(d, text))
        return len(done)

    def join(self) -> None:
        """Wait for every job submitted (the end of a run)."""
        while True:
            with self.lock:
                if not self.pending:
                    return
            threading.Event().wait(0.01)

    def stop(self) -> None:
        if self.thread is not None:
            self.jobs.put(None)
            self.thread.join()


def decode_spool(opts: Options) -> str:
    """Where a run keeps its waiting jobs: one folder per run (each live worker has its state file)."""
    run = os.path.splitext(os.path.basename(opts.state_file))[0] if opts.state_file else "record"
    return os.path.join(opts.out_dir, "decoding", run)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
