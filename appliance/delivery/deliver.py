"""Draining the delivery queue: each due (call, target) row is sent, verified and confirmed, or its
failure recorded with the time of the next try (``backoff``). Oldest calls first, ``concurrency``
transfers at once per target, a bandwidth limit per target.

A call goes to a target as two files: ``<id>.wav`` (the recording as recorded) and then
``<id>.json`` (its sidecar plus a ``delivery`` record: target, key, format, bytes, SHA-256). The row
is confirmed only after both were verified at the target, so the sidecar's presence at the target
means the audio beside it is whole.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from appliance.delivery import backoff, layout
from appliance.delivery.formats import Format, as_recorded, convert, extension
from appliance.delivery.policy import Policy
from appliance.delivery.queue import Due, Queue
from appliance.delivery.targets import DeliveryError, Target, Throttle, file_sha256, prefix_of, target_for
from appliance.delivery.window import Window
from capture.clock import utc
from capture.store.files import to_json, write_json_atomic

log = logging.getLogger("shadowrec.delivery")
BATCH = 100


@dataclass
class Outcome:
    delivered: int = 0
    bytes: int = 0
    failed: dict[str, tuple[int, str]] = field(default_factory=dict)  # target -> (calls, last error)
    waiting: list[str] = field(default_factory=list)  # targets outside their window this pass

    def add_failure(self, target: str, error: str) -> None:
        n, _ = self.failed.get(target, (0, ""))
        self.failed[target] = (n + 1, error)


@dataclass(frozen=True)
class Sent:
    nbytes: int = 0
    sha256: str = ""
    error: str | None = None
    key: str | None = None  # where the WAV is at the target


@dataclass(frozen=True)
class Spec:
    """One target as configured: its URL, which calls, when, how many at once, how fast."""

    url: str
    policy: Policy = Policy.ALL
    window: Window = Window()
    concurrency: int = 2
    bytes_per_s: float | None = None
    format: Format = Format.WAV


def _minute_of_day() -> int:
    t = time.localtime()
    return t.tm_hour * 60 + t.tm_min


class Deliverer:
    def __init__(
        self,
        out_dir: str,
        targets: list[Spec | str],
        policy: Policy = Policy.ALL,
        concurrency: int = 2,
        bytes_per_s: float | None = None,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        base_s: float = backoff.BASE_S,
        minute_of_day: Callable[[], int] = _minute_of_day,
        fmt: Format = Format.WAV,
    ):
        """``targets``: specs, or URLs that take ``policy``, ``concurrency`` and ``bytes_per_s``."""
        if not targets:
            raise ValueError("no target to deliver to")
        self.out = out_dir
        self.specs = [
            t if isinstance(t, Spec) else Spec(t, policy, Window(), concurrency, bytes_per_s, fmt) for t in targets
        ]
        self.targets: list[Target] = [target_for(s.url, Throttle(s.bytes_per_s)) for s in self.specs]
        self.clock, self.rand, self.base_s, self.minute_of_day = clock, rand, base_s, minute_of_day
        self.queue = Queue(os.path.join(out_dir, "catalog.sqlite"))
        for t, spec in zip(self.targets, self.specs, strict=True):
            self.queue.register(t.url, spec.policy)
        self.tmp = tempfile.mkdtemp(prefix="shadowrec-delivery-")

    def run_once(self, every_pending: bool = False) -> Outcome:
        """One pass over every target: enqueue new calls, send what is due (``every_pending``:
        everything pending, as ``archive --once`` does). Each row is tried at most once a pass."""
        out = Outcome()
        for t, spec in zip(self.targets, self.specs, strict=True):
            try:
                self.queue.enqueue(t.url, spec.policy)
            except sqlite3.Error as e:  # a full disk: what is queued already is still sent
                log.error("%s: new calls not queued: %s", t.url, e)
            if not spec.window.open_at(self.minute_of_day()):
                out.waiting.append(t.url)  # queued, sent when its window opens
                continue
            after = ("", "")
            while True:
                rows = self.queue.due(t.url, self.clock(), BATCH, every_pending, after)
                if not rows:
                    break
                after = (rows[-1].started_at, rows[-1].call_id)
                self._batch(t, spec, rows, out)
        return out

    def _batch(self, t: Target, spec: Spec, rows: list[Due], out: Outcome) -> None:
        texts = {r.call_id: self.queue.sidecar_text(r.call_id) for r in rows}  # the queue's thread only
        with ThreadPoolExecutor(max(1, spec.concurrency)) as ex:
            futures = {ex.submit(self._send, t, spec, r, texts[r.call_id]): r for r in rows}
            for f in as_completed(futures):  # each confirmed as soon as it is verified (a kill loses none)
                r = futures[f]
                self._record(t, r, f.result(), out, texts[r.call_id])

    def _record(self, t: Target, r: Due, sent: Sent, out: Outcome, text: str | None) -> None:
        """The outcome into the queue. The queue lives on the recordings' disk: if that is full the
        row stays as it was (a confirmed copy is sent again later, to the same key), and the pass
        goes on."""
        try:
            self._record_row(t, r, sent, out, text)
        except sqlite3.Error as e:
            out.add_failure(t.url, f"the queue could not be written: {e}")
            log.error("%s: call %s: the queue could not be written (%s)", t.url, r.call_id, e)

    def _record_row(self, t: Target, r: Due, sent: Sent, out: Outcome, text: str | None) -> None:
        if sent.error is None:
            self.queue.confirm(r.call_id, t.url, sent.nbytes, sent.sha256, self.clock(), sent.key)
            out.delivered += 1
            out.bytes += sent.nbytes
            if text is not None:  # a confirmed call had its catalog row, read for the batch
                self._mark_local(r.call_id, text)
            return
        wait = backoff.delay_s(r.attempts + 1, self.base_s, rand=self.rand)
        self.queue.fail(r.call_id, t.url, sent.error, self.clock() + wait)
        out.add_failure(t.url, sent.error)
        if r.attempts < 3 or r.attempts % 20 == 0:
            log.warning("%s: call %s not delivered (%s); next try in %.0f s", t.url, r.call_id, sent.error, wait)

    def _mark_local(self, call_id: str, text: str) -> None:
        """The call's sidecar here (its catalog ``text`` names it) says where it was delivered (the
        queue stays the record: a sidecar that cannot be rewritten, on a full disk, is logged and left)."""
        path = os.path.join(self.out, json.loads(text)["wav"][:-4] + ".json")
        try:
            with open(path) as f:
                sc = json.load(f)
            sc["delivery"] = self.queue.state(call_id)
            write_json_atomic(path, sc)
        except (OSError, ValueError) as e:
            log.warning("sidecar %s not updated with its delivery: %s", path, e)

    def _send(self, t: Target, spec: Spec, row: Due, text: str | None) -> Sent:
        """Both files verified at the target (the bytes sent, the WAV's SHA-256), or why not."""
        try:
            if text is None:
                raise DeliveryError("the call is not in the catalog")
            sc = json.loads(text)
            wav = os.path.join(self.out, sc["wav"])
            if not os.path.exists(wav):
                raise DeliveryError(f"the recording {sc['wav']} is missing")
            audio = wav
            if not as_recorded(spec.format, sc.get("encoding", "pcm16")):  # a copy in the target's format
                audio = os.path.join(self.tmp, f"{row.call_id}.{abs(hash(t.url))}.{extension(spec.format)}")
                convert(wav, audio, spec.format, sc.get("codec"))
            try:
                size, sha = file_sha256(audio)
                prefix = prefix_of(t)
                wav_key = layout.key(prefix, row.call_id, row.started_at, extension(spec.format))
                t.put(wav_key, audio, size, sha)
            finally:
                if audio != wav:
                    os.unlink(audio)
            sc["delivery"] = {
                "target": t.url,
                "key": wav_key,
                "format": str(spec.format),
                "bytes": size,
                "sha256": sha,
                "delivered_at": utc(int(self.clock()), "%Y-%m-%dT%H:%M:%SZ"),
            }
            meta = os.path.join(self.tmp, f"{row.call_id}.{abs(hash(t.url))}.json")
            with open(meta, "w") as f:
                f.write(to_json(sc) + "\n")
            msize, msha = file_sha256(meta)
            try:
                t.put(layout.key(prefix, row.call_id, row.started_at, "json"), meta, msize, msha)
            finally:
                os.unlink(meta)
            return Sent(size + msize, sha, key=wav_key)
        except DeliveryError as e:
            return Sent(error=str(e))
        except Exception as e:  # a fault of ours or of a library: counted as a failure, the row stays queued
            log.exception("delivering %s to %s", row.call_id, t.url)
            return Sent(error=f"{type(e).__name__}: {e}")

    def close(self) -> None:
        self.queue.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
