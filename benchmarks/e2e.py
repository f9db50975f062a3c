"""End to end: cleanroom on both X25519 backends against OpenMined PSI, on the same data.

For each configuration (N platform identifiers, n advertiser records; ``_e2e_data``), in one run:

1. the platform through the real CLI, one process per step (``_e2e_platform``): ``init``,
   ``import``, ``issue-cert`` once per N; then, for each backend (``CLEANROOM_X25519=ifma`` and
   ``=openssl``, given to the server and to every client process; ``openssl`` alone on a CPU
   without AVX-512 IFMA): ``epoch rotate``, ``serve``, and ``cleanroom match --mode count``
   then ``--mode ids --out`` (three times) as a user runs them (``_e2e_sessions``), with the
   per-operation costs measured just before and just after them and before each ids session;
2. on the ifma server (the openssl one without IFMA), a long-lived ``Advertiser`` matching
   again and again (``_e2e_library``), which also counts the bytes each way;
3. the session's crypto alone on that backend: for the library's, just before each of its warm
   matches (the Advertiser waiting meanwhile), for the other, right after its sessions; once
   both backends are done, OpenMined PSI in its own venv;
4. per-operation costs of every backend on one core before the first configuration and after
   each (``_e2e_costs``).

Every count, every ids ``--out`` file, the library's matched rows and OpenMined's intersection
must equal the truth from the generator, or the benchmark stops with exit status 1. The figures
and targets are defined in ``_e2e_figures``; the Markdown and the plot come from ``_e2e_render``.

Usage::

    python benchmarks/e2e.py [--sizes 10000,100000,1000000] [--unbalanced N:n] [--out FILE.json]
        [--openmined-python .venv-openmined/bin/python] [--workdir DIR] [--write-results]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import _report
from _e2e_costs import measure_crypto_alone, measure_unit_costs
from _e2e_data import Config, Inputs, canonical_emails, write_inputs, write_platform_csv
from _e2e_figures import (
    Measurements,
    backends_here,
    config_figures,
    costs_around,
    evaluate_targets,
    paired_crypto_alone,
)
from _e2e_platform import Platform
from _e2e_render import plot, render, summary_line
from _e2e_sessions import run_cli_sessions, run_library, run_openmined
from _harness import Server, become_subreaper, reap_orphans

from cleanroom.crypto.x25519 import ifma_problem

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OPENMINED_PYTHON = ROOT / ".venv-openmined" / "bin" / "python"
Costs = dict[str, dict[str, Any]]  # backend -> per-operation costs


class Bench:
    """One run over every configuration, in one work folder."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.platforms: dict[int, tuple[Platform, Config]] = {}
        self.cores = len(os.sched_getaffinity(0))
        self.backends = backends_here()
        self.ceiling = self.backends[0]  # also the long-lived Advertiser's backend

    def unit_costs(
        self, when: str, backends: Sequence[str] | None = None, server: Server | None = None
    ) -> Costs:
        """Per-operation costs of ``backends`` (every one here) measured now (beside the idle
        ``server``)."""
        print(f"per-operation costs on one core, {when}:", flush=True)
        running = frozenset() if server is None else frozenset({server.process.pid})
        costs = {}
        for backend in self.backends if backends is None else backends:
            costs[backend] = measure_unit_costs(
                backend, self.args.unit_cost_messages, self.cores, running
            )
            print(
                f"  {backend}: hash_to_curve {costs[backend]['hash_to_curve_us']:.2f} µs, "
                f"exchange {costs[backend]['exchange_us']:.2f} µs",
                flush=True,
            )
        return costs

    def run(
        self, configs: list[Config], save: Callable[[list[dict[str, Any]]], None]
    ) -> list[dict[str, Any]]:
        """Every configuration in turn; ``save`` gets the results so far after each."""
        needed = max(config.people_needed for config in configs)
        print(f"generating {needed:,} synthetic people …", flush=True)
        emails = canonical_emails(needed, self.args.seed)
        before = self.unit_costs("before the first size")
        results: list[dict[str, Any]] = []
        for config in configs:
            print(f"\nN = {config.big_n:,}, n = {config.n:,} (overlap {config.overlap:.0%}):")
            measured = self.measure(config, emails)
            after = self.unit_costs("after it")
            measured.costs = {b: costs_around(before[b], after[b]) for b in self.backends}
            results.append(config_figures(measured, self.cores))
            print(summary_line(results[-1]), flush=True)
            save(results)
            before = after
        return results

    def platform(self, config: Config, emails: list[str]) -> tuple[Platform, Config | None]:
        """The platform database of this N: built now, or reused from an earlier configuration."""
        if config.big_n in self.platforms:
            platform, built_for = self.platforms[config.big_n]
            print(f"  platform database reused from n = {built_for.n:,}", flush=True)
            return platform, built_for
        platform = Platform(self.work / f"platform-N{config.big_n}", config.big_n, config.n)
        platform.folder.mkdir()
        users = platform.folder / "users.csv"
        write_platform_csv(config, emails, self.args.seed, users)
        platform.build(users)
        if self.args.workdir is None:
            users.unlink()
        self.platforms[config.big_n] = (platform, config)
        return platform, None

    def measure(self, config: Config, emails: list[str]) -> Measurements:
        """Every measurement of one configuration (each checked against the truth)."""
        work = self.work / config.label
        work.mkdir()
        platform, reused_from = self.platform(config, emails)
        inputs = write_inputs(config, emails, self.args.seed, work)
        cli, servers, library, session_costs, crypto = {}, {}, {}, {}, {}
        ids_costs: dict[str, list[dict[str, Any]]] = {}
        for backend in self.backends:
            platform.rotate(backend)
            server = platform.serve(backend, work / f"server-{backend}.log")
            try:
                # The ceiling's costs (and the backend's own) just before and just after its
                # sessions: the machine's speed drifts over the minutes of a configuration
                # (OpenMined alone takes eight at 10^6), so the costs around the whole of it
                # misjudge a session run at one end.
                # And the ceiling's costs before each ids session too, so that each session is
                # set against the minute it ran in (its efficiency: the median of theirs).
                priced = sorted({self.ceiling, backend})
                before = self.unit_costs(f"before the {backend} sessions", priced, server)
                marks = [before]

                def measure_now(
                    marks: list[Costs] = marks, priced: list[str] = priced, server: Server = server
                ) -> None:
                    marks.append(self.unit_costs("before an ids session", priced, server))

                cli[backend] = run_cli_sessions(
                    backend, server, platform, inputs, work, self.args.cli_repeat, measure_now
                )
                after = self.unit_costs(f"after the {backend} sessions", priced, server)
                session_costs[backend] = {b: costs_around(before[b], after[b]) for b in priced}
                ids_costs[backend] = [
                    costs_around(start[self.ceiling], end[self.ceiling])
                    for start, end in zip(marks[1:], [*marks[2:], after], strict=True)
                ]

                # The crypto alone as close as can be to the sessions it is compared with, for
                # the same reason: the library's each just before one of its warm matches,
                # while the Advertiser waits; the other backend's right after its sessions.
                def crypto_alone(running: frozenset[int], backend: str = backend) -> Any:
                    return measure_crypto_alone(backend, config.big_n, config.n, running)

                if backend == self.ceiling:
                    library = run_library(
                        backend, server, platform, inputs, self.args.repeat, crypto_alone
                    )
                    crypto[backend] = paired_crypto_alone(library.pop("paired"))
                else:
                    crypto[backend] = crypto_alone(frozenset({server.process.pid}))
                servers[backend] = server.peak_rss_mb()
            finally:
                server.stop()
                reap_orphans(set())
        openmined = run_openmined(self.args.openmined_python, inputs, work)
        self.clean_up(inputs)
        steps = {name: asdict(step) for name, step in platform.steps.items()}
        return Measurements(
            config=config,
            backends=self.backends,
            steps=steps,
            import_report=platform.import_report,
            reused_from=reused_from,
            cli=cli,
            servers=servers,
            library=library,
            crypto=crypto,
            openmined=openmined,
            costs={},  # filled in once the costs after it are measured
            session_costs=session_costs,
            ids_costs=ids_costs,
        )

    def clean_up(self, inputs: Inputs) -> None:
        if self.args.workdir is None:
            for path in (inputs.openmined_server, inputs.openmined_client, inputs.customers_csv):
                path.unlink()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    add = parser.add_argument
    add("--sizes", default="10000,100000,1000000", help="n = N, comma separated (%(default)s)")
    add("--unbalanced", action="append", default=[], metavar="N:n", help="also N against n")
    add("--overlap", type=float, default=0.5, help="share of n on the platform (%(default)s)")
    add("--seed", type=int, default=7, help="seed of the synthetic data (%(default)s)")
    add("--repeat", type=int, default=3, help="warm library matches per size (%(default)s)")
    add(
        "--cli-repeat",
        type=int,
        default=3,
        help="warm CLI ids sessions per size and backend; the median counts (%(default)s)",
    )
    add("--out", type=Path, metavar="FILE.json", help="write the results here")
    add(
        "--openmined-python",
        type=Path,
        default=DEFAULT_OPENMINED_PYTHON,
        metavar="PATH",
        help="interpreter of a venv with openmined-psi (default: .venv-openmined/bin/python)",
    )
    add("--unit-cost-messages", type=int, default=20_000, metavar="K", help="per measurement")
    add("--workdir", type=Path, help="keep the files in a new folder under DIR")
    add("--write-results", action="store_true", help="results/e2e.json, e2e.png, RESULTS.md")
    return parser.parse_args()


def parse_configs(args: argparse.Namespace) -> list[Config]:
    configs = [Config(int(s), int(s), args.overlap) for s in args.sizes.split(",") if s.strip()]
    for spec in args.unbalanced:
        big_n, _, n = spec.partition(":")
        if not big_n.isdigit() or not n.isdigit():
            raise SystemExit(f"--unbalanced takes N:n, e.g. 1000000:100000, not {spec!r}")
        configs.append(Config(int(big_n), int(n), args.overlap))
    if not configs:
        raise SystemExit("nothing to run: give --sizes or --unbalanced")
    return configs


def payload(args: argparse.Namespace, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON of the run: no path of this machine (the OpenMined interpreter relative to here)."""
    python = args.openmined_python.absolute()  # not resolved: a venv's python is a symlink
    return {
        "benchmark": "e2e",
        "machine": _report.machine(),
        "command": _report.command_line(),
        "openmined_python": os.path.relpath(python, ROOT) if python.is_relative_to(ROOT) else None,
        "openmined_version": results[0]["openmined"]["version"] if results else None,
        "backends": list(backends_here()),
        "ifma_problem": ifma_problem(),
        "results": results,
        "targets": evaluate_targets(results),
    }


def check_no_machine_paths(final: dict[str, Any], work: Path) -> None:
    """Refuse to record a path of this machine (the repository's or the work folder's)."""
    text = json.dumps(final)
    for path in (ROOT, work, Path.home()):
        if f'"{path}' in text or f"{path}/" in text:
            raise SystemExit(f"the results would record a path of this machine ({path})")


def write_results(final: dict[str, Any], text: str) -> None:
    _report.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (_report.RESULTS_DIR / "e2e.json").write_text(json.dumps(final, indent=1) + "\n")
    plot(final["results"], _report.RESULTS_DIR / "e2e.png")
    _report.write_section("e2e", text)


def main() -> None:
    """Run the benchmark, print the results and optionally record them."""
    args = parse_args()
    configs = parse_configs(args)
    if not args.openmined_python.exists():
        raise SystemExit(
            f"no OpenMined interpreter at {args.openmined_python}: "
            "`make .venv-openmined/.installed` builds it (make bench does), or pass "
            "--openmined-python"
        )

    def save(results: list[dict[str, Any]]) -> None:
        # After every size, so a long run that fails later still leaves what it measured.
        if args.out is not None:
            args.out.write_text(json.dumps(payload(args, results), indent=1) + "\n")

    become_subreaper()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="e2e-") as temporary:
        work = Path(temporary)
        if args.workdir is not None:
            args.workdir.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix="e2e-", dir=args.workdir))
        results = Bench(args, work).run(configs, save)
    final = payload(args, results)
    check_no_machine_paths(final, work)
    text = render(final, "results/e2e.png" if args.write_results else None)
    if args.write_results:
        write_results(final, text)
    print(f"\n{text}\n({time.perf_counter() - started:.0f} s in all)", flush=True)


if __name__ == "__main__":
    main()
