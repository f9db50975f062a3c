"""The end-to-end benchmark's output: the RESULTS.md section, the plot and a line per size.

The section repeats no definition: it quotes those of ``_e2e_figures``' docstring.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import _e2e_figures
import _report

Result = dict[str, Any]


def summary_line(r: Result) -> str:
    """One configuration's headline figures, as printed while the benchmark runs."""
    parts = [
        f"{b} cold {f['cold_s']:.2f} s / warm {f['warm_s']:.2f} s (ratio {f['ratio_cold']:.2f} / "
        f"{f['ratio_warm']:.2f}, efficiency {f['efficiency']:.2f})"
        for b, f in r["backends"].items()
    ]
    return (
        f"  => {'; '.join(parts)}; library warm {r['library_warm_s']:.2f} s "
        f"({r['library']['vs_crypto_alone']:.2f}× its crypto alone); OpenMined "
        f"{r['openmined_s']:.2f} s; peak RSS {r['cleanroom_peak_rss_max_mb']:.0f} MB"
    )


def definitions() -> list[str]:
    """The definitions of ``_e2e_figures`` as Markdown."""
    doc = (_e2e_figures.__doc__ or "").split("\n\n", 1)[1]
    return [doc.replace("``", "`").strip(), ""]


def _table(header: list[str], rows: list[list[str]], left: int = 0) -> list[str]:
    """A Markdown table; the first ``left`` columns left-aligned, the others right-aligned."""
    align = ["---"] * left + ["---:"] * (len(header) - left)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows] + [""]


def _size(r: Result) -> list[str]:
    return [f"{r['n']:,}", f"{r['N']:,}"]


def headline(results: list[Result]) -> list[str]:
    """Per size and backend: cold, warm, ratios, efficiency, throughput."""
    header = ["n", "N", "backend", "rotate s", "**cold s**", "**warm s**", "count s"]
    header += ["OpenMined s", "**ratio cold**", "**ratio warm**"]
    header += ["efficiency (each ids session; sessions' costs; own ceiling)"]
    header += ["elements / core-s", "vs crypto alone"]
    rows = []
    for r in results:
        for backend, f in r["backends"].items():
            rows.append(
                [
                    *_size(r),
                    backend,
                    f"{f['rotate_s']:.2f}",
                    f"**{f['cold_s']:.2f}**",
                    f"**{f['warm_s']:.2f}**",
                    f"{f['count_warm_s']:.2f}",
                    f"{r['openmined_s']:.2f}",
                    f"**{f['ratio_cold']:.2f}**",
                    f"**{f['ratio_warm']:.2f}**",
                    f"{f['efficiency']:.2f} ("
                    + " / ".join(f"{e:.2f}" for e in f["efficiency_per_session"])
                    + f"; {f['efficiency_session_group_costs']:.2f}"
                    + f"; {f['efficiency_own_ceiling']:.2f})",
                    f"{f['elements_per_core_s_warm']:,.0f}",
                    f"{f['vs_crypto_alone']:.2f}×",
                ]
            )
    return _table(header, rows, left=3)


def core_seconds(results: list[Result]) -> list[str]:
    """Where each backend's median ids session spent its wall × cores."""
    header = ["n", "N", "backend", "wall × cores", "ideal crypto", "advertiser CLI"]
    header += ["its workers", "server main", "server workers", "not counted"]
    keys = ("wall_x_cores", "ideal_crypto", "advertiser_main", "advertiser_workers")
    keys += ("server_main", "server_workers", "not_counted")
    rows = [
        [*_size(r), backend, *(f"{f['core_s'][key]:.2f}" for key in keys)]
        for r in results
        for backend, f in r["backends"].items()
    ]
    return _table(header, rows, left=3)


def library(results: list[Result]) -> list[str]:
    """The long-lived Advertiser against its crypto alone."""
    header = ["n", "N", "**library warm s**", "runs s", "µs / element", "first ids s"]
    header += ["count s", "crypto alone s", "**vs crypto alone**", "efficiency"]
    rows = []
    for r in results:
        lib = r["library"]
        runs = ", ".join(f"{wall:.2f}" for wall in lib["warm_runs_s"])
        rows.append(
            [
                *_size(r),
                f"**{lib['warm_s']:.2f}**",
                runs,
                f"{lib['us_per_element']:.1f}",
                f"{lib['first_ids_s']:.2f}",
                f"{lib['count_s']:.2f}",
                f"{lib['crypto_alone_s']:.2f}",
                f"**{lib['vs_crypto_alone']:.2f}×**",
                f"{lib['efficiency']:.2f}",
            ]
        )
    return _table(header, rows)


def unit_costs(results: list[Result]) -> list[str]:
    """Per-operation costs around each size, per backend."""
    header = ["n", "N", "backend", "hash_to_curve µs (before / after)", "exchange µs"]
    header += ["validate µs", "normalize µs", "every core busy: h2c / exchange"]
    rows = []
    for r in results:
        for backend, u in r["unit_costs_us"].items():

            def around(key: str, costs: dict[str, Any] = u) -> str:
                return (
                    f"{costs[key]:.2f} ({costs[key + '_before']:.2f} / {costs[key + '_after']:.2f})"
                )

            busy = f"{u['hash_to_curve_us_all_cores']:.2f} / {u['exchange_us_all_cores']:.2f}"
            rows.append(
                [
                    *_size(r),
                    backend,
                    around("hash_to_curve_us"),
                    around("exchange_us"),
                    f"{u['validate_us']:.2f}",
                    f"{u['normalize_us']:.2f}",
                    busy,
                ]
            )
    return _table(header, rows, left=3)


def wire_bytes(results: list[Result]) -> list[str]:
    """Bytes each way, MB."""
    header = ["n", "N", "ids up", "ids down", "count up", "count down", "OpenMined up"]
    header += ["OpenMined down"]
    rows = []
    for r in results:
        b = r["bytes"]
        cells = [b[who][way] for who in ("ids", "count", "openmined") for way in _WAYS]
        rows.append([*_size(r), *(f"{value / 1e6:.2f}" for value in cells)])
    return _table(header, rows)


_WAYS = ("client_to_server", "server_to_client")


def peak_rss(results: list[Result]) -> list[str]:
    """Peak RSS, MB: one row per process, one column per size."""
    names = list(dict.fromkeys(name for r in results for name in r["peak_rss_mb"]))
    header = ["process", *(f"n {r['n']:,} / N {r['N']:,}" for r in results)]
    rows = [
        [name.replace("_", " ")]
        + [f"{r['peak_rss_mb'][name]:.0f}" if name in r["peak_rss_mb"] else "–" for r in results]
        for name in names
    ]
    return _table(header, rows, left=1)


def phases(results: list[Result]) -> list[str]:
    """The CLI's phases per backend and mode, the library's, and OpenMined's."""
    rows = []
    for r in results:
        for backend, figures in r["backends"].items():
            for mode, session in figures["sessions"].items():
                rows.append([*_size(r), f"CLI {mode}, {backend}", _phases(session["phases"])])
        library = f"library ids, {_library_backend([r])}"
        rows.append([*_size(r), library, _phases(r["library"]["phases"])])
        rows.append([*_size(r), "OpenMined", _phases(r["openmined"]["phases"])])
    return _table(["n", "N", "run", "phases, s"], rows, left=3)


def _phases(named: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds:.2f}" for name, seconds in named.items())


def render(final: dict[str, Any], plot_path: str | None) -> str:
    """The Markdown of the "e2e" section of RESULTS.md."""
    results = final["results"]
    cores = f"{results[0]['cores']} usable; " if results else ""
    lines = _report.heading(
        "End to end against OpenMined PSI", final["machine"], final["command"], cores
    )
    lines += [
        f"OpenMined PSI {final['openmined_version']}; every intersection equals the "
        "generator's truth.",
        "",
    ]
    if final.get("ifma_problem"):
        lines += [
            f"**No AVX-512 IFMA here**: {final['ifma_problem']}. cleanroom ran on OpenSSL "
            "alone, and its efficiency is against OpenSSL's ceiling.",
            "",
        ]
    lines += [
        *definitions(),
        "Targets:",
        "",
        *(f"- {t['verdict']}: {t['target']}: {t['value']}" for t in final["targets"]),
        "",
    ]
    if plot_path:
        lines += [f"![time against size]({plot_path})", ""]
    for title, table in _TABLES:
        title = title.format(library=_library_backend(results))
        lines += [f"{title}:", "", *table(results)]
    return "\n".join(lines)


_TABLES = (
    ("cleanroom's CLI sessions per backend against OpenMined", headline),
    ("Where the median ids session's core-seconds go (core-seconds)", core_seconds),
    ("The long-lived Advertiser ({library})", library),
    ("Per-operation costs on one core (µs)", unit_costs),
    ("Bytes each way (MB)", wire_bytes),
    ("Peak RSS (MB)", peak_rss),
    ("Phases", phases),
)


def plot(results: list[Result], path: Path) -> None:
    """Log–log seconds against size: both backends (cold, warm, library) and OpenMined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    balanced = sorted((r for r in results if r["balanced"]), key=lambda r: r["n"])
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for label, value, color, style in _series(results):
        sizes = [r["n"] for r in balanced]
        ax.plot(sizes, [value(r) for r in balanced], style, marker="o", color=color, label=label)
        for r in (r for r in results if not r["balanced"]):
            ax.plot(r["N"], value(r), marker="D", fillstyle="none", color=color, linestyle="none")
    if any(not r["balanced"] for r in results):
        ax.plot([], [], "D", fillstyle="none", color="gray", label="unbalanced (at N)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 1 else f"{value:g}")
    ax.set_xticks(sorted({r["N"] for r in results}))
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(plain)
    ax.set_xlabel("n = N (identifiers per side)")
    ax.set_ylabel("seconds")
    ax.set_title(f"PSI end to end: cleanroom ({', '.join(_backends(results))}) vs OpenMined")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _backends(results: list[Result]) -> list[str]:
    """The backends that ran (both, or OpenSSL alone on a CPU without IFMA)."""
    return list(dict.fromkeys(b for r in results for b in r["backends"]))


def _library_backend(results: list[Result]) -> str:
    """The long-lived Advertiser's backend: ifma where it runs."""
    return str(results[0]["library"]["backend"]["name"]) if results else "ifma"


def _series(results: list[Result]) -> list[tuple[str, Any, str, str]]:
    """(label, value of a result, colour, line style) of each plotted series."""
    colours = {"ifma": "tab:blue", "openssl": "tab:green"}
    series: list[tuple[str, Any, str, str]] = []
    for b in _backends(results):
        series.append((f"cleanroom {b} cold (CLI)", _getter(b, "cold_s"), colours[b], "--"))
        series.append((f"cleanroom {b} warm (CLI)", _getter(b, "warm_s"), colours[b], "-"))
    library = f"cleanroom {_library_backend(results)} library warm"
    series.append((library, lambda r: r["library_warm_s"], "tab:cyan", ":"))
    series.append(("OpenMined PSI", lambda r: r["openmined_s"], "tab:red", "-"))
    return series


def _getter(backend: str, key: str) -> Any:
    return lambda r: r["backends"][backend][key]
