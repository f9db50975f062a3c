"""``cleanroom receipt verify``: check a session receipt offline, with the platform's audit key.

::

    cleanroom receipt verify FILE --key audit.pub [--json]

``FILE`` is what ``cleanroom match --receipt FILE`` wrote; ``audit.pub`` is the platform's audit
public key (``platform issue-cert`` puts it in the advertiser's folder). Exit 0 when the
signature verifies, 1 when it does not (naming why), 2 when a file cannot be read. That the
platform's log still holds the receipt's entry is checked on the platform's side, by
``cleanroom platform audit verify --receipt FILE``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cleanroom._output import printable
from cleanroom._signing import AUDIT_PUBLIC_KEY_FILE, read_public_key
from cleanroom.cli._args import print_json
from cleanroom.errors import InvalidInput
from cleanroom.protocol._receipt import MAX_RECEIPT_BYTES, Receipt, read_receipt

__all__ = ["load_public_key", "load_receipt", "register", "run_receipt_verify"]


def register(subparsers: Any) -> None:
    """Add the ``receipt`` command group."""
    group = subparsers.add_parser("receipt", help="session receipts signed by the platform")
    commands = group.add_subparsers(dest="receipt_command", metavar="COMMAND", required=True)
    verify = commands.add_parser(
        "verify",
        help="check a receipt's signature with the platform's audit key",
        description="Check a session receipt's signature with the platform's audit public key.",
    )
    verify.add_argument("file", type=Path, metavar="FILE", help="the receipt (JSON)")
    verify.add_argument(
        "--key",
        required=True,
        type=Path,
        metavar=AUDIT_PUBLIC_KEY_FILE,
        help="the platform's audit public key",
    )
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.set_defaults(run=run_receipt_verify)


def load_receipt(path: Path) -> Receipt:
    """Read a receipt file.

    Raises:
        InvalidInput: the file cannot be read.
        ReceiptInvalid: it is not a receipt.
    """
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_RECEIPT_BYTES + 1)
    except OSError as exc:
        raise InvalidInput(f"cannot read receipt {path}: {exc.strerror or exc}") from exc
    return read_receipt(data)


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read an ``audit.pub``.

    Raises:
        InvalidInput: the file cannot be read or is not an Ed25519 public key.
    """
    return read_public_key(path, InvalidInput)


def run_receipt_verify(args: argparse.Namespace) -> int:
    """``receipt verify``: exit 0 when the signature holds; a bad one raises (exit 1)."""
    public_key = load_public_key(args.key)
    receipt = load_receipt(args.file)
    receipt.verify(public_key)
    if args.json:
        print_json({"valid": True, "receipt": receipt.to_dict()})
        return 0
    count = "below the threshold" if receipt.count is None else str(receipt.count)
    lines = [
        f"receipt valid: signed by audit key {receipt.key}",
        f"  session {receipt.session} of {receipt.advertiser}, {receipt.mode} mode, "
        f"epoch {receipt.epoch}",
        f"  released {count} (reported as {receipt.reported_as!r}), epsilon charged "
        f"{receipt.epsilon_charged:g}",
        f"  audit entry {receipt.audit_seq} ({receipt.audit_hash[:16]}…) of {receipt.audit_at}; "
        "the platform proves it still holds it with 'platform audit verify --receipt'",
    ]
    # The platform wrote the receipt's text: shown escaped, like everything it sends.
    print("\n".join(map(printable, lines)))
    return 0
