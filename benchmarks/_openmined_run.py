"""OpenMined PSI on one pair of sets, in one process: the baseline of benchmarks/e2e.py.

Run by the interpreter of a separate venv that has ``openmined-psi==2.0.6`` (it needs protobuf
6, which conflicts with the project's pins), so this script imports nothing from cleanroom::

    .venv-openmined/bin/python benchmarks/_openmined_run.py \\
        --server-inputs server.txt --client-inputs client.txt --out result.json

Each input file holds one identifier per line, already normalized by cleanroom's normalizer
(``email:<normalized value>``), so both systems match the same strings. The phases are the
protocol's, as OpenMined's own examples run them, with ``reveal_intersection=True`` and the RAW
data structure (the encrypted server set sent whole, no false positives):

1. ``server_setup``: ``server.CreateWithNewKey(True)`` and ``CreateSetupMessage(0.0, n, X, RAW)``;
2. ``client_request``: ``client.CreateWithNewKey(True)`` and ``CreateRequest(Y)``;
3. ``server_response``: ``server.ProcessRequest(request)``;
4. ``client_intersection``: ``client.GetIntersection(setup, response)``.

Writes JSON: seconds and CPU seconds per phase (and their sum, ``total_s``), the serialized
size of each message (setup and response go server -> client, the request client -> server;
serialized after the clock stops), the peak RSS of this process, and the intersection as
indices into the client's list.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import private_set_intersection.python as psi

REVEAL_INTERSECTION = True
FALSE_POSITIVE_RATE = 0.0  # unused by the RAW data structure, which has no false positives


def _read_lines(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as f:
        return f.read().splitlines()


def _vm_hwm_kb() -> int:
    """Peak RSS of this process since it started (exec), from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    """Run the four phases on the two files and write the JSON report."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--server-inputs", type=Path, required=True, metavar="FILE")
    parser.add_argument("--client-inputs", type=Path, required=True, metavar="FILE")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE.json")
    args = parser.parse_args()

    read_start = time.perf_counter()
    server_items = _read_lines(args.server_inputs)
    client_items = _read_lines(args.client_inputs)
    read_s = time.perf_counter() - read_start

    phases: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def timed(name: str, step: Callable[[], Any]) -> Any:
        wall, cpu_start = time.perf_counter(), time.process_time()
        result = step()
        phases[name] = time.perf_counter() - wall
        cpu[name] = time.process_time() - cpu_start
        return result

    def setup_server() -> tuple[Any, Any]:
        server = psi.server.CreateWithNewKey(REVEAL_INTERSECTION)
        setup = server.CreateSetupMessage(
            FALSE_POSITIVE_RATE, len(client_items), server_items, psi.DataStructure.RAW
        )
        return server, setup

    def client_request() -> tuple[Any, Any]:
        client = psi.client.CreateWithNewKey(REVEAL_INTERSECTION)
        return client, client.CreateRequest(client_items)

    server, setup = timed("server_setup", setup_server)
    client, request = timed("client_request", client_request)
    response = timed("server_response", lambda: server.ProcessRequest(request))
    intersection = timed("client_intersection", lambda: client.GetIntersection(setup, response))

    sizes = {
        "setup": len(setup.SerializeToString()),
        "request": len(request.SerializeToString()),
        "response": len(response.SerializeToString()),
    }
    report = {
        "version": psi.__version__,
        "server_items": len(server_items),
        "client_items": len(client_items),
        "read_inputs_s": read_s,
        "phases": phases,
        "cpu_s": cpu,
        "total_s": sum(phases.values()),
        "total_cpu_s": sum(cpu.values()),
        "message_bytes": sizes,
        "bytes": {
            "client_to_server": sizes["request"],
            "server_to_client": sizes["setup"] + sizes["response"],
        },
        # VmHWM, not ru_maxrss: ru_maxrss survives exec and would report the size of the
        # benchmark process this one was forked from.
        "peak_rss_mb": _vm_hwm_kb() / 1024,
        "intersection": sorted(int(i) for i in intersection),
    }
    args.out.write_text(json.dumps(report))


if __name__ == "__main__":
    main()
