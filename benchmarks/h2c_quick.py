"""Quick check: hash-to-curve cost per message against one raw X25519 exchange.

Both loops run in the same process on the same messages. Each round walks the batch in chunks
and times the raw exchange loop and ``hash_to_curve_many`` on each chunk back to back, so load
from other work on the shared 2-core machine hits both about equally; the round's ratio is
(total hash time) / (total exchange time). The median ratio over the rounds is the figure to
quote; the target for x25519 is at most 1.2.

Usage: .venv/bin/python benchmarks/h2c_quick.py [--count 20000] [--chunk 1000] [--rounds 5]
       [--suite x25519|p256]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from cleanroom.crypto import h2c_curve25519, h2c_p256

DSTS = {
    "x25519": b"CLEANROOM-V1-X25519-SHA512-ELL2-RO",
    "p256": b"CLEANROOM-V1-P256-SHA256-SSWU-RO",
}


def _seconds(run: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    run(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description="hash-to-curve vs raw X25519, per item")
    parser.add_argument("--count", type=int, default=20_000, help="messages per round")
    parser.add_argument("--chunk", type=int, default=1000, help="messages per timed call")
    parser.add_argument("--rounds", type=int, default=5, help="rounds over the whole batch")
    parser.add_argument("--suite", choices=sorted(DSTS), default="x25519")
    args = parser.parse_args()

    msgs = [b"cleanroom/v1/email/" + os.urandom(32) for _ in range(args.count)]
    dst = DSTS[args.suite]
    module = h2c_curve25519 if args.suite == "x25519" else h2c_p256
    # Valid public values for the baseline: hashes of the same messages.
    us = [row.tobytes() for row in h2c_curve25519.hash_to_curve_many(msgs, DSTS["x25519"])]
    k = X25519PrivateKey.generate()

    def raw_exchange(chunk: list[bytes]) -> None:
        for u in chunk:
            k.exchange(X25519PublicKey.from_public_bytes(u))

    starts = range(0, args.count, args.chunk)
    ratios = []
    print(f"{args.count} messages in chunks of {args.chunk}, suite {args.suite}; us per item")
    print("round  exchange      hash     ratio")
    for round_no in range(1, args.rounds + 1):
        exchange_s = hash_s = 0.0
        for start in starts:
            chunk_us = us[start : start + args.chunk]
            chunk_msgs = msgs[start : start + args.chunk]
            exchange_s += _seconds(raw_exchange, chunk_us)
            hash_s += _seconds(module.hash_to_curve_many, chunk_msgs, dst)
        ratios.append(hash_s / exchange_s)
        exchange_us, hash_us = exchange_s / args.count * 1e6, hash_s / args.count * 1e6
        print(f"{round_no:5d} {exchange_us:9.2f} {hash_us:9.2f} {ratios[-1]:9.3f}")
    print(f"median ratio hash / exchange: {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
