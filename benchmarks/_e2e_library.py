"""A long-lived Advertiser matching one list again and again: the library's warm sessions.

Run by ``benchmarks/e2e.py`` in a process of its own::

    python benchmarks/_e2e_library.py --server HOST:PORT --tls-dir DIR --input customers.csv \\
        --repeat R [--paced]

One :class:`cleanroom.advertiser.Advertiser` (its TLS channel and batch-engine workers kept
between matches) runs a count match, then R + 1 ids matches; the first ids match is reported
apart, the R after it are the warm ones. ``--paced``: before each warm match it prints
``ready`` and waits for a line on stdin, so that the caller can measure something else (the
crypto alone) just before each, with the Advertiser idle.

A gRPC client interceptor counts every message each way on the wire, as gRPC frames it (the
serialized protobuf plus its 5-byte prefix: a flag and the length; HTTP/2 and TLS framing are
not counted); the policy call's answer is counted when it arrives, so the Advertiser still
reads its list while the call is in flight. Prints JSON: each match's wall, phases, count and a
digest of the matched rows (compared with the truth by the caller), the bytes per mode, and the
X25519 backend.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped, unused-ignore]
from _e2e_data import positions_digest

READY = "ready"  # --paced: printed before each warm match
GRPC_PREFIX_BYTES = 5  # gRPC's length-prefixed message framing: flag byte + uint32 length


class WireCounter(grpc.UnaryUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Counts the messages of every call each way, as gRPC frames them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # a unary answer is counted on gRPC's thread
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.bytes = {"client_to_server": 0, "server_to_client": 0}
            self.messages = {"client_to_server": 0, "server_to_client": 0}

    def _count(self, way: str, message: Any) -> None:
        with self._lock:
            self.bytes[way] += GRPC_PREFIX_BYTES + message.ByteSize()
            self.messages[way] += 1

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self._count("client_to_server", request)
        call = continuation(details, request)
        call.add_done_callback(self._count_answer)
        return call

    def _count_answer(self, call: Any) -> None:
        if call.exception() is None:
            self._count("server_to_client", call.result())

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        def counted(messages: Any, way: str) -> Iterator[Any]:
            for message in messages:
                self._count(way, message)
                yield message

        return counted(
            continuation(details, counted(requests, "client_to_server")), "server_to_client"
        )


def _run(advertiser: Any, counter: WireCounter, customers: Path, mode: str) -> dict[str, Any]:
    counter.reset()
    start = time.perf_counter()
    report = advertiser.match(customers, mode=mode)
    wall = time.perf_counter() - start
    positions = report.matched_row_positions
    digest = None if positions is None else positions_digest(positions)
    return {
        "mode": mode,
        "wall_s": wall,
        "phases": dict(report.phases),
        "count": report.count,
        "identifiers_sent": report.identifiers_sent,
        "platform_set_size": report.platform_set_size,
        "matched_digest": digest,
        "bytes": dict(counter.bytes),
        "messages": dict(counter.messages),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--tls-dir", type=Path, required=True)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--paced", action="store_true", help="wait for a line before each warm match"
    )
    args = parser.parse_args()
    from cleanroom.advertiser import Advertiser
    from cleanroom.crypto import backend_info

    counter = WireCounter()
    with Advertiser(args.server, args.tls_dir, interceptors=[counter]) as advertiser:
        count = _run(advertiser, counter, args.input, "count")
        runs = [_run(advertiser, counter, args.input, "ids")]
        for _ in range(args.repeat):
            if args.paced:
                print(READY, flush=True)
                sys.stdin.readline()
            runs.append(_run(advertiser, counter, args.input, "ids"))
    result = {
        "backend": dataclasses.asdict(backend_info()),
        "count": count,
        "first_ids": runs[0],
        "ids": runs[1:],
    }
    print(json.dumps(result))


if __name__ == "__main__":  # the engine's workers import this module: only the script runs it
    main()
