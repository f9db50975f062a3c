"""Hostile advertisers for the load benchmark's attack run, speaking raw gRPC.

Each :class:`Attacker` holds a valid certificate and, until stopped, runs loops of its own, more
of them than the platform lets one advertiser hold streams:

- **idle streams** (one loop): opens a ``Match`` stream and sends nothing; it ends at the
  platform's first-message deadline (or is refused at once), and the next one is opened right
  after;
- **oversized, duplicated U** (two loops): opens sessions whose U is one valid point repeated
  (three per record, every count and tag in order), and, one time in four, an opening that
  announces more identifiers than its records may carry; it reads V as an honest client would,
  so the platform never blocks on sending it. The most costly thing an attacker can make the
  platform do: each session loads and streams V before any of U can be checked.

A refusal for a limit (``RESOURCE_EXHAUSTED``) is retried after ``retry_pause`` seconds; a real
attacker would retry at once, but its own CPU would then be the benchmark's (one machine runs
everything), which is not what the benchmark measures.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np

from cleanroom import tls
from cleanroom.crypto import get_suite
from cleanroom.identifiers import NORMALIZATION_VERSION
from cleanroom.protocol import PROTOCOL_VERSION
from cleanroom.protocol._wire import pb, rows_per_chunk

_MATCH = "/cleanroom.v1.Matcher/Match"
_SUITE = get_suite("x25519-sha512-ell2-ro")


def _opening(records: int, identifiers: int) -> bytes:
    return pb.ClientMessage(
        open_session=pb.OpenSession(
            mode=pb.MATCH_MODE_COUNT,
            suite=_SUITE.suite_id,
            normalization_version=NORMALIZATION_VERSION,
            protocol_version=PROTOCOL_VERSION,
            record_count=records,
            identifier_count=identifiers,
        )
    ).SerializeToString()


class Attacker:
    """One hostile advertiser: its idle-stream loop and its duplicated-U loop.

    Args:
        address: the platform.
        tls_dir: the attacker's (valid) certificate folder.
        elements: elements of the duplicated U.
        idle_loops: idle streams it tries to hold at once.
        u_loops: sessions with a duplicated U it tries to run at once.
        retry_pause: seconds before retrying a refused stream.
    """

    def __init__(
        self,
        address: str,
        tls_dir: Path,
        elements: int,
        idle_loops: int = 1,
        u_loops: int = 2,
        retry_pause: float = 0.2,
    ) -> None:
        self._channel = grpc.secure_channel(address, tls.channel_credentials(tls_dir))
        # Identity serializers: messages go out as prepared bytes, replies come in unparsed.
        self._match = self._channel.stream_stream(_MATCH)
        self._records = elements // 3
        self._elements = self._records * 3
        self._point = _SUITE.hash_to_curve(b"one guess, many times", _SUITE.dst)
        self._retry_pause = retry_pause
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.outcomes: Counter[str] = Counter()
        self._threads = [
            threading.Thread(target=loop, daemon=True)
            for loop in [self._idle_loop] * idle_loops + [self._u_loop] * u_loops
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._channel.close()  # ends the calls in flight
        for thread in self._threads:
            thread.join(timeout=60)

    def _count(self, loop: str, code: grpc.StatusCode) -> None:
        with self._lock:
            self.outcomes[f"{loop}: {code.name}"] += 1
        if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
            self._stop.wait(self._retry_pause)

    def _idle_loop(self) -> None:
        while not self._stop.is_set():
            silence: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
            call = self._match(iter(silence.get, None), timeout=600)  # sends nothing
            self._count("idle stream", _drain(call))
            silence.put(None)

    def _u_loop(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            attempt += 1
            oversized = attempt % 4 == 0
            identifiers = 3 * self._records + 1 if oversized else self._elements
            outgoing: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
            outgoing.put(_opening(self._records, identifiers))
            call = self._match(iter(outgoing.get, None), timeout=600)
            try:
                replies = iter(call)
                opened = pb.ServerMessage.FromString(next(replies))
                for chunk in self._u(opened.session_opened.session_id):
                    outgoing.put(chunk)
                code = _drain(replies)
            except StopIteration:
                code = grpc.StatusCode.OK
            except grpc.RpcError as exc:
                code = exc.code()
            finally:
                outgoing.put(None)
            self._count("oversized opening" if oversized else "duplicated U", code)

    def _u(self, session_id: bytes) -> Iterator[bytes]:
        per_chunk = rows_per_chunk(_SUITE.element_size + 4)
        for start in range(0, self._elements, per_chunk):
            count = min(per_chunk, self._elements - start)
            tags = (np.arange(start, start + count) % self._records).astype("<u4")
            chunk = pb.AdvertiserSetChunk(
                session_id=session_id,
                offset=start,
                count=count,
                elements=self._point * count,
                record_tags=tags.tobytes(),
            )
            yield pb.ClientMessage(advertiser_set=chunk).SerializeToString()


def _drain(call: Iterator[bytes]) -> grpc.StatusCode:
    """Read a call to its end; its status code."""
    try:
        for _ in call:
            pass
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()  # type: ignore[attr-defined]
        return code
    return grpc.StatusCode.OK
