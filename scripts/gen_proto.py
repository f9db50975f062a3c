"""Generate the Python protobuf and gRPC code from proto/ into src/cleanroom/_proto/.

The one generator for the project: ``make proto`` runs it, CI runs it with ``--check`` to prove
that the committed generated code matches the .proto files.

The proto packages all live under ``cleanroom`` (``cleanroom.v1``); their code goes to the same
path below ``cleanroom._proto`` without that common first part (``cleanroom._proto.v1``). protoc
writes ``from cleanroom.v1 import matcher_pb2`` for imports between generated modules, which
would resolve against the top-level ``cleanroom`` package; this script rewrites them to the
package path the code lives at.

Usage::

    .venv/bin/python scripts/gen_proto.py           # regenerate in place
    .venv/bin/python scripts/gen_proto.py --check   # exit 1 if regeneration would change files
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
OUT_ROOT = ROOT / "src" / "cleanroom" / "_proto"
# The Python package that OUT_ROOT is; proto packages become subpackages of it, without their
# common first part PROTO_PREFIX (every proto package is cleanroom.*).
OUT_PACKAGE = "cleanroom._proto"
PROTO_PREFIX = "cleanroom"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
INIT_TEXT = '"""Generated code: do not edit; run scripts/gen_proto.py."""\n'


def proto_files() -> list[Path]:
    """Return the .proto files under proto/, relative to it, sorted for a stable output."""
    return sorted(p.relative_to(PROTO_ROOT) for p in PROTO_ROOT.rglob("*.proto"))


def run_protoc(out_dir: Path) -> None:
    """Run grpc_tools.protoc (the one installed in this interpreter) into ``out_dir``."""
    import grpc_tools
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(p) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def python_package(proto_package: str) -> str:
    """The Python package the code of ``proto_package`` (e.g. ``cleanroom.v1``) goes to."""
    return f"{OUT_PACKAGE}.{proto_package.removeprefix(PROTO_PREFIX + '.')}"


def fix_imports(text: str, proto_packages: set[str]) -> str:
    """Point imports of generated modules at their place inside the cleanroom package."""
    for package in sorted(proto_packages):
        text = re.sub(
            rf"^(\s*)from {re.escape(package)} import ",
            rf"\1from {python_package(package)} import ",
            text,
            flags=re.MULTILINE,
        )
        text = re.sub(
            rf"^(\s*)import {re.escape(package)}\.",
            rf"\1import {python_package(package)}.",
            text,
            flags=re.MULTILINE,
        )
    return text


def generate() -> dict[Path, str]:
    """Return the generated files (relative to OUT_ROOT) and their text."""
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(tmp)
        run_protoc(out_dir)
        generated = sorted(
            p for p in out_dir.rglob("*") if p.is_file() and p.name.endswith(GENERATED_SUFFIXES)
        )
        proto_packages = {".".join(p.relative_to(out_dir).parent.parts) for p in generated}
        if any(not package.startswith(PROTO_PREFIX + ".") for package in proto_packages):
            raise SystemExit(f"every proto package must be {PROTO_PREFIX}.*: {proto_packages}")
        files = {
            p.relative_to(out_dir / PROTO_PREFIX): fix_imports(p.read_text(), proto_packages)
            for p in generated
        }
    # Every directory on the way down must be a package for the imports to work.
    for rel in list(files):
        for parent in rel.parents:
            files.setdefault(parent / "__init__.py", INIT_TEXT)
    return files


def existing() -> dict[Path, str]:
    """Return the generated files currently in OUT_ROOT."""
    if not OUT_ROOT.exists():
        return {}
    return {
        p.relative_to(OUT_ROOT): p.read_text()
        for p in OUT_ROOT.rglob("*")
        if p.is_file() and (p.name.endswith(GENERATED_SUFFIXES) or p.name == "__init__.py")
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if files would change"
    )
    args = parser.parse_args(argv)
    wanted = generate()
    current = existing()
    if args.check:
        stale = sorted(
            set(wanted) ^ set(current) | {p for p in wanted if wanted[p] != current.get(p)}
        )
        for rel in stale:
            diff = difflib.unified_diff(
                current.get(rel, "").splitlines(keepends=True),
                wanted.get(rel, "").splitlines(keepends=True),
                fromfile=f"committed/{rel}",
                tofile=f"regenerated/{rel}",
            )
            sys.stdout.writelines(diff)
        if stale:
            print(f"generated code is stale: run scripts/gen_proto.py ({len(stale)} files)")
            return 1
        return 0
    for rel in set(current) - set(wanted):
        (OUT_ROOT / rel).unlink()
    for rel, text in sorted(wanted.items()):
        path = OUT_ROOT / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if current.get(rel) != text:
            path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
