"""Check Intel's crypto_mb X25519 (mbx_x25519_mb8) against OpenSSL on the inputs it got wrong.

cleanroom computes X25519 on AVX-512 IFMA with its own ladder (src/cleanroom/crypto/
_x25519_ifma.c) because crypto_mb 2026.2.0 returned wrong results for valid curve points whose
52-bit limbs are all ones or nearly. This script shows it for a given release, so the decision
can be revisited when Intel ships a fix: it downloads ``ipp-crypto-static`` and
``ipp-crypto-include`` with pip into a temporary folder, links a small C program against the
static archive (the two OpenSSL BIGNUM symbols its converters' object references are defined to
abort: X25519 never reaches them), runs it on the same inputs as the test
``test_both_backends_agree_where_the_limbs_are_all_ones`` under a few random keys, and counts the
results that differ from OpenSSL's.

Usage (needs a C compiler, pip access to PyPI and a CPU with AVX-512 IFMA)::

    .venv/bin/python scripts/check_crypto_mb.py [--version 2026.2.0] [--keys 3]

Exit status 0 when every result agrees, 1 when some differ.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from cleanroom.crypto.suites import X25519Suite

PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <crypto_mb/x25519.h>
void BN_num_bits(void) { abort(); }
void BN_bn2lebinpad(void) { abort(); }
/* stdin: one line per group of 8, "key u0 ... u7" in hex; stdout: the 8 results or "error" */
static int unhex(const char *s, unsigned char *out) {
    for (int i = 0; i < 32; i++) if (sscanf(s + 2 * i, "%2hhx", &out[i]) != 1) return 0;
    return 1;
}
int main(void) {
    char key_hex[65], u_hex[8][65];
    while (scanf("%64s %64s %64s %64s %64s %64s %64s %64s %64s", key_hex, u_hex[0], u_hex[1],
                 u_hex[2], u_hex[3], u_hex[4], u_hex[5], u_hex[6], u_hex[7]) == 9) {
        unsigned char key[32], u[8][32], out[8][32];
        const int8u *keys[8], *us[8];
        int8u *outs[8];
        if (!unhex(key_hex, key)) return 2;
        for (int j = 0; j < 8; j++) {
            if (!unhex(u_hex[j], u[j])) return 2;
            keys[j] = key; us[j] = u[j]; outs[j] = out[j];
        }
        mbx_status status = mbx_x25519_mb8(outs, keys, us);
        for (int j = 0; j < 8; j++) {
            if (MBX_GET_STS(status, j) != MBX_STATUS_OK) printf("error ");
            else { for (int i = 0; i < 32; i++) printf("%02x", out[j][i]); printf(" "); }
        }
        printf("\n");
    }
    return 0;
}
"""


def inputs() -> list[int]:
    """The u of the test (``limbs_near_all_ones`` in tests/unit/test_x25519_backend.py)."""
    path = Path(__file__).resolve().parent.parent / "tests" / "unit" / "test_x25519_backend.py"
    spec = importlib.util.spec_from_file_location("test_x25519_backend", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    values: list[int] = module.limbs_near_all_ones()
    return values


def build(version: str, folder: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--prefix",
            str(folder / "prefix"),
            f"ipp-crypto-static=={version}",
            f"ipp-crypto-include=={version}",
        ],
        check=True,
    )
    archive = next((folder / "prefix").rglob("libcrypto_mb.a"))
    include = next((folder / "prefix").rglob("crypto_mb/x25519.h")).parent.parent
    source, binary = folder / "check.c", folder / "check"
    source.write_text(PROGRAM)
    cc = os.environ.get("CC", "cc")
    subprocess.run(
        [cc, "-O2", f"-I{include}", str(source), str(archive), "-o", str(binary)], check=True
    )
    return binary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default="2026.2.0", help="ipp-crypto-static version")
    parser.add_argument("--keys", type=int, default=3, help="random keys to try")
    args = parser.parse_args()
    us = inputs()
    us += [us[0]] * (-len(us) % 8)
    with tempfile.TemporaryDirectory() as tmp:
        binary = build(args.version, Path(tmp))
        wrong, wrong_valid = set(), set()
        for _ in range(args.keys):
            key = os.urandom(32)
            lines = [
                key.hex() + " " + " ".join(u.to_bytes(32, "little").hex() for u in us[i : i + 8])
                for i in range(0, len(us), 8)
            ]
            out = subprocess.run(
                [str(binary)],
                input="\n".join(lines) + "\n",
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            private = X25519PrivateKey.from_private_bytes(key)
            for u, got in zip(us, out, strict=True):
                encoded = u.to_bytes(32, "little")
                expected = private.exchange(X25519PublicKey.from_public_bytes(encoded)).hex()
                if got != expected:
                    wrong.add(u)
                    if X25519Suite.element_problem(encoded) is None:
                        wrong_valid.add(u)
    print(
        f"crypto_mb {args.version}: {len(wrong)} of {len(set(us))} u wrong under at least one of "
        f"{args.keys} keys, {len(wrong_valid)} of them valid elements"
    )
    for u in sorted(wrong_valid)[:5]:
        print(f"  e.g. u = {u:#x}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
