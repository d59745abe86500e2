"""Resuming open calls across a restart: ``DIR/state-N.json``.

On a stop (SIGTERM: a ``systemctl restart``, a package upgrade) each open call's audio is written
up to now and the call is saved: its place in the call table, its file, its streams' counters and
events. The next start on the same directory puts the calls back and goes on writing the same
WAV files; the downtime is silence, and nothing is lost or duplicated.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import glob
import json
import os
from typing import TYPE_CHECKING, Any

from capture.media import wav
from capture.sip.calls import Call, CallState, CallTable, EndReason, MediaMapped, Party
from capture.sip.dialog import Dialog, DialogState
from capture.sip.evidence import EvidenceItem
from capture.sip.sdp import Crypto
from capture.store.catalog import Catalog
from capture.store.files import to_json, write_file_atomic, write_json_atomic
from capture.store.outputs import CallRecording
from capture.store.sidecar import Stream, TelephoneEvent, iso, row_of
from capture.store.silence import fill_holes
from capture.store.wavfile import WavWriter

if TYPE_CHECKING:
    from capture.recorder import Recorder

NS = 1_000_000_000
VERSION = 1


def call_to_dict(call: Call) -> dict[str, Any]:
    """A call's place in the call table as plain data."""
    return {
        "id": call.id,
        "pair_key": list(call.pair_key),
        "started_ns": call.started_ns,
        "near": vars(call.near),
        "far": vars(call.far),
        "primary_address": call.primary_address,
        "primary_port": call.primary_port,
        "transport": call.transport,
        "previous": call.previous,
        "signalled_from": call.signalled_from,
        "state": call.state.value,
        "joined": [call.joined_late, call.joined_by, call.channels_guessed],
        "evidence": [e.to_state() for e in call.evidence],
        "dialogs": {
            r: {
                "call_id": d.call_id,
                "invite_cseq": d.invite_cseq,
                "state": d.state.value,
                "key": d.key,
                "recorder_media": d.recorder_media,
                "phone_addr": d.phone_addr,
                "codec": d.codec,
                "audio_pt": d.audio_pt,
                "event_pt": d.event_pt,
                "secure": d.secure,
                "crypto": _crypto_state(d.crypto),
                "offered": [_crypto_state(c) for c in d.offered],
                "fmtp": d.fmtp,
                "hidden": d.hidden,
            }
            for r, d in call.dialogs.items()
        },
    }


def _crypto_state(c: Crypto | None) -> dict[str, Any] | None:
    """An SDES key as the state file keeps it (the file is private: 0640, as the recordings)."""
    return (
        None if c is None else {"tag": c.tag, "suite": c.suite, "key": base64.b64encode(c.key).decode(), "mki": c.mki}
    )


def _crypto_of(d: dict[str, Any] | None) -> Crypto | None:
    return None if d is None else Crypto(d["tag"], d["suite"], base64.b64decode(d["key"]), d["mki"])


def restore_calls(table: CallTable, items: list[dict[str, Any]]) -> list[Call]:
    """Put calls saved by ``call_to_dict`` back into ``table``; returns them."""
    out = []
    for c in items:
        call = Call(
            c["id"],
            tuple(c["pair_key"]),
            c["started_ns"],
            Party(**c["near"]),
            Party(**c["far"]),
            c["primary_address"],
            c["primary_port"],
            c["transport"],
            c["previous"],
            c.get("signalled_from", ""),
            CallState(c["state"]),
            evidence=[EvidenceItem.from_state(e) for e in c["evidence"]],
        )
        call.joined_late, call.joined_by, call.channels_guessed = c.get("joined", (False, "", False))
        for role, d in c["dialogs"].items():
            dl = Dialog(
                d["call_id"],
                role,
                call,
                d["invite_cseq"],
                DialogState(d["state"]),
                d["key"],
                d["recorder_media"],
                d["phone_addr"],
                d["codec"],
                d["audio_pt"],
                d["event_pt"],
                d.get("secure", False),
                _crypto_of(d.get("crypto")),
                tuple(c for c in map(_crypto_of, d.get("offered", ())) if c is not None),
                d.get("fmtp", ""),
                d.get("hidden", ""),
            )
            call.dialogs[role] = dl
            table.dialogs[dl.call_id] = dl
            if dl.key is not None:
                table.media[dl.key] = dl
        table.calls[call.id] = call
        table.schedule(call, 0)  # looked at by the next tick
        table.last_of_pair[call.pair_key] = call.id
        if len(call.dialogs) < 2 and call.state is not CallState.ENDED:
            table.pending[call.pair_key] = call
        out.append(call)
    return out


def save(rec: Recorder, path: str) -> int:
    """Write every open call's audio up to now, close its files and save it; returns how many."""
    calls, engine = rec.calls, rec.engine
    items = []
    for r in calls.active.values():
        if r.wav is not None:
            due = ((rec.now - r.call.started_ns) * wav.RATE) // NS
            r.wav.append(engine.flush(r.slot, max(due, calls.frames(r))))
            r.wav.close(durable=True)
        anchors = {}
        for role, key in list(r.keys.items()):
            sid = engine.stream_id(key)
            a = engine.anchor(sid) if sid is not None else None
            if a is not None:
                anchors[role] = list(a)
            calls.drop_stream(r, role, key)
        items.append(
            {
                "call": call_to_dict(r.call),
                "wav": r.wav_rel or None,
                "streams": [dataclasses.asdict(s) for s in r.finished_streams],
                "events": [dataclasses.asdict(e) for e in r.events.values()],
                "last_rtp_ns": engine.last_rtp_ns(r.slot),
                "saved_ns": rec.now,
                "gap_frames": r.gap_frames,
                "anchors": anchors,  # role -> [ssrc, position, rtp ts]: the streams' timing goes on
            }
        )
        if r.wav is not None:
            calls.write_meta(r)
    write_json_atomic(path, {"version": VERSION, "calls": items}, durable=True)
    return len(items)


def restore(rec: Recorder, path: str) -> int:
    """Resume the calls saved in ``path``, if it exists (it is renamed ``.restored``); returns the
    capture time they were saved at (0: nothing to resume)."""
    if not os.path.exists(path):
        return 0
    calls, engine = rec.calls, rec.engine
    with open(path) as f:
        items = json.load(f)["calls"]
    saved_ns = 0
    for call, it in zip(restore_calls(rec.table, [it["call"] for it in items]), items):
        flushed = 0
        r = CallRecording(call, 0)
        if it["wav"]:
            r.wav_rel = it["wav"]
            r.wav = WavWriter(os.path.join(rec.opts.out_dir, r.wav_rel), rec.io, resume=True)
            r.meta_path = os.path.join(rec.opts.out_dir, r.wav_rel[:-4] + ".json")
            flushed = r.wav.frames
        r.slot = engine.add_call(call.started_ns, flushed, it["last_rtp_ns"])
        if r.wav is not None:
            calls.writing(r)
        elif rec.opts.own_by_rtp:
            calls.unopened[call.id] = r
        r.finished_streams = [Stream(**s) for s in it["streams"]]
        r.gap_frames = it.get("gap_frames", 0)  # audio a full disk kept out, before the restart
        r.events = {(e["role"], i): TelephoneEvent(**e) for i, e in enumerate(it["events"])}
        calls.active[call.id] = r
        saved_ns = max(saved_ns, it["saved_ns"])
        for role, d in call.dialogs.items():
            if d.key is not None:
                fx = MediaMapped(call, role, d.key, None, d.codec, d.audio_pt, d.event_pt, d.secure, d.crypto)
                calls.mapped(dataclasses.replace(fx, offered=d.offered, hidden=d.hidden))
                sid = engine.stream_id(d.key)
                if sid is not None and role in it.get("anchors", {}):
                    engine.set_anchor(sid, *it["anchors"][role])
    os.replace(path, path + ".restored")
    rec.counters["calls_resumed"] += len(items)
    return saved_ns


def close_interrupted(out_dir: str, catalog: Catalog) -> int:
    """At the start of live capture: the calls the catalog says are recording, which no state file
    will resume, were open when the recorder was killed (SIGKILL, a power loss). Each WAV is valid up
    to its last flushed audio; its header is made to cover all of it, and the call is closed there:
    ``complete``, ``end_reason: interrupted``. Returns how many. (Joining them again mid-call is
    not done: the rest of such a call is not recorded.)"""
    resumed: set[str] = set()
    for p in glob.glob(os.path.join(out_dir, "state-*.json")):
        with contextlib.suppress(OSError, ValueError, KeyError):
            with open(p) as f:
                resumed.update(it["call"]["id"] for it in json.load(f)["calls"])
    n = 0
    for d in catalog.query(state="recording"):
        if d["id"] in resumed or not d.get("wav"):
            continue
        path = os.path.join(out_dir, d["wav"])
        try:
            fd = os.open(path, os.O_RDWR)
            try:
                enc = wav.encoding(os.pread(fd, wav.HEADER_BYTES, 0))
                frames = max(0, os.fstat(fd).st_size - wav.HEADER_BYTES) // wav.frame_bytes(enc)
                with contextlib.suppress(OSError):  # a G.711 file's holes: silence if the disk takes it
                    fill_holes(fd, enc)
                os.pwrite(fd, wav.header(frames * wav.frame_bytes(enc), enc), 0)
            finally:
                os.close(fd)
        except OSError:
            frames = d.get("frames", 0)
        started = datetime.datetime.fromisoformat(d["started_at"].replace("Z", "+00:00"))
        started_ns = int(started.timestamp()) * NS + started.microsecond * 1000
        ended_ns = started_ns + frames * NS // wav.RATE
        d.update(state="complete", end_reason=str(EndReason.INTERRUPTED), frames=frames, ended_at=iso(ended_ns))
        d["duration_s"] = round((ended_ns - started_ns) / NS, 3)
        text = to_json(d)
        write_file_atomic(path[: -len(".wav")] + ".json", (text + "\n").encode())
        catalog.upsert(row_of(d, text))
        n += 1
    catalog.commit()
    return n
