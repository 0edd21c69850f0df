"""Run every benchmark and write one performance report: ``docs/performance.md`` + PNG plots.

``make bench`` runs this. Each script in ``benchmarks/`` (helpers and peers aside) runs once, one
after the other, in its short mode (``SHORT`` below; ``--full`` uses each script's defaults).
The report keeps every script's own output (its absolute figures, labelled with the machine they
were measured on) and puts the **ratios** first: they compare contenders measured in the same
run, round by round, so they hold up on a loaded machine where absolute figures do not.

A ratio is read from the lines each script prints for that purpose (``RATIO_LINES``): a value
``median [min-max]`` (or ``1.23x``) on such a line. A script whose output changes shape still
appears in the report with its full output; only its ratios would be missing from the headline.

    python benchmarks/report.py                      # all, short mode, ~10 minutes
    python benchmarks/report.py --only engine_throughput,channel_throughput --full
    python benchmarks/report.py --only client_roundtrip --update   # redo one, keep the rest
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
NOT_BENCHMARKS = {"report.py", "rawpeers.py", "loadpeers.py", "rust_engine.py",
                  "span_instructions.py"}  # needs valgrind; run by hand

# Each script's short mode: fewer rounds and shorter measurements, the same scenarios.
SHORT: dict[str, list[str]] = {
    "engine_throughput": ["--duration", "0.5", "--rounds", "3"],
    "worker_throughput": ["--duration", "0.5", "--rounds", "3"],
    "client_roundtrip": ["--duration", "0.5", "--rounds", "3", "--windows", "1,64"],
    "channel_throughput": ["--rounds", "3", "--mb-64k", "32", "--mb-1k", "4"],
    "http_trigger": ["--duration", "1", "--rounds", "3"],
    "operators_throughput": ["--items", "100000", "--rounds", "3"],
    "encode_frames": ["--rounds", "3"],
    "engine_load": ["--workers", "20", "--functions", "20", "--worker-processes", "2",
                    "--calls", "10000", "--callers", "4"],
    "engine_soak": ["--duration", "20", "--rate", "200", "--workers", "4", "--functions", "4",
                    "--loris-sockets", "10"],
}

# Which lines of a script's output carry its ratios.
RATIO_LINES: dict[str, str] = {
    "engine_throughput": r"^ratio ",
    "worker_throughput": r"^\s+(\w+ handler: throughput|iii_rx .* / raw-frame|raw-frame worker /)",
    "client_roundtrip": r"\d\.\d\d \[[\d.]+-[\d.]+\]\s*$",
    "channel_throughput": r"^\S+\s*/\s*\S+.*:",
    "http_trigger": r"iii_rx / official",
    "operators_throughput": r"^\s+\S+( \S+)? / \S+",
}

# Context a ratio line's label needs: the last heading line matching this (its first group).
CONTEXT: dict[str, str] = {
    "client_roundtrip": r"^([A-Z]{4,})\b",
    "http_trigger": r"^(\S[^:]*):",
}
# Lines that a section's "target" heading does not apply to.
NO_TARGET: dict[str, str] = {"worker_throughput": r"raw-frame"}

VALUE = re.compile(r"(?<![\d,])(\d+\.\d+)(?: \[(\d+\.\d+)-(\d+\.\d+)\]|x)")
TARGET = re.compile(r"target[^<>]*?([<>]=?)\s*([\d.]+)")


@dataclass
class Ratio:
    script: str
    label: str
    median: float
    low: float
    high: float
    target: str = ""


@dataclass
class Run:
    script: str
    argv: list[str]
    seconds: float = 0.0
    code: int | None = None
    output: str = ""
    ratios: list[Ratio] = field(default_factory=list)


def scripts(only: set[str] | None) -> list[str]:
    found = sorted(p.stem for p in BENCH.glob("*.py")
                   if p.name not in NOT_BENCHMARKS and not p.name.startswith("_"))
    return [s for s in found if only is None or s in only]


def run(script: str, full: bool, timeout: float) -> Run:
    argv = [sys.executable, str(BENCH / f"{script}.py"), *([] if full else SHORT.get(script, []))]
    result = Run(script, argv)
    env = {**os.environ, "OTEL_ENABLED": "false"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    print(f"== {script}: {' '.join(argv[1:])}", flush=True)
    started = time.monotonic()
    try:
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)
        result.code, result.output = done.returncode, done.stdout
        if done.returncode:
            result.output += "\n" + done.stderr[-4000:]
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        result.output = out + f"\n(stopped after {timeout:.0f} s)"
    result.seconds = time.monotonic() - started
    result.ratios = ratios_of(script, result.output)
    print(f"   {result.seconds:.0f} s, exit {result.code}, {len(result.ratios)} ratios", flush=True)
    return result


def ratios_of(script: str, output: str) -> list[Ratio]:
    pattern = RATIO_LINES.get(script)
    if pattern is None:
        return []
    found: list[Ratio] = []
    section = section_target = ""
    context = re.compile(CONTEXT.get(script, r"(?!)"))
    no_target = re.compile(NO_TARGET.get(script, r"(?!)"))
    for line in output.splitlines():
        if m := context.match(line):
            section = m.group(1).strip()
        if not line.strip():
            section_target = ""
        t = TARGET.search(line)
        if not re.search(pattern, line):
            if t:  # a heading such as "ratios (per round; target <= 1.5):"
                section_target = f"{t.group(1)} {t.group(2)}"
            continue
        target = f"{t.group(1)} {t.group(2)}" if t else section_target
        if no_target.search(line):
            target = ""
        first = VALUE.search(line)
        head, sep, _ = line.partition(":")
        if sep and len(head) < 90 and (first is None or len(head) < first.start()):
            label, previous = head.strip(), len(head) + 1
        else:
            cut = first.start() if first else len(line)
            label, previous = line[:cut].strip(), cut
        if script == "client_roundtrip":  # rows: label and window in 33 columns, ratio last
            label, previous = line[:33].strip(), first.start() if first else 0
        if section:
            label = f"{section.lower() if section.isupper() else section}: {label}"
        label = re.sub(r"\s*\(target[^)]*\)|,?\s*target [<>]=?\s*[\d.]+", "", label)
        for m in VALUE.finditer(line):
            sub = line[previous:m.start()].strip(" ,;:")
            sub = re.sub(r"^(throughput|x)\s*", "", sub)
            previous = m.end()
            med = float(m.group(1))
            low = float(m.group(2)) if m.group(2) else med
            high = float(m.group(3)) if m.group(3) else med
            name = f"{label} — {sub}" if sub and sub != label else label
            found.append(Ratio(script, re.sub(r"\s+", " ", name), med, low, high, target))
    return found


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    rust = Path.home() / ".cache" / "iii-engine" / "iii"
    return {
        "date (UTC)": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "CPU": f"{cpu}, {os.cpu_count()} logical cores",
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "iii_rx commit": commit or "unknown",
        "Rust engine": "built, measured where a script compares with it" if rust.exists()
        else "not built: the scripts skip it",
    }


def plot(runs: list[Run], out_dir: Path) -> list[tuple[str, str]]:
    """One horizontal bar chart of ratios per script; returns (script, png path from docs/)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for r in runs:
        if not r.ratios:
            continue
        rows = r.ratios[::-1]
        fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.2))
        ys = range(len(rows))
        ax.barh(ys, [x.median for x in rows],
                xerr=[[x.median - x.low for x in rows], [x.high - x.median for x in rows]],
                color="#4c72b0", ecolor="#333333", capsize=3)
        ax.set_yticks(list(ys), [x.label[:70] for x in rows], fontsize=8)
        ax.axvline(1.0, color="#c44e52", linewidth=1)
        ax.set_xlabel("ratio (median of rounds; bars: min-max); red line = 1.0")
        ax.set_title(f"{r.script}: ratios within one run")
        fig.tight_layout()
        path = out_dir / f"{r.script}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        made.append((r.script, path.relative_to(ROOT / "docs").as_posix()))
    return made


def report(runs: list[Run], info: dict[str, str], load: tuple[float, float], full: bool,
           plots: list[tuple[str, str]]) -> str:
    lines = [
        "# Performance",
        "",
        "Written by `make bench` (`benchmarks/report.py`), which runs every script in "
        "`benchmarks/` once"
        + ("" if full else ", each in its short mode (fewer and shorter rounds)")
        + ". **Ratios are the headline**: each compares two contenders measured in the same run, "
        "round by round, so a burst of load from elsewhere hits both. Absolute figures are those "
        "of the machine below and move a lot between runs when it is shared.",
        "",
        "| machine | |",
        "| --- | --- |",
        *[f"| {k} | {v} |" for k, v in info.items()],
        f"| load average (1 min) | {load[0]:.2f} before, {load[1]:.2f} after |",
        "",
        "How each benchmark measures, and what its targets mean, is in `benchmarks/README.md`.",
        "",
        *shared_note(load),
        *failed_note(runs),
        "## Ratios",
        "",
        "| benchmark | comparison | median | min-max | target |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for r in runs:
        for x in r.ratios:
            lines.append(f"| {r.script} | {x.label} | {x.median:.2f} | {x.low:.2f}-{x.high:.2f} "
                         f"| {x.target} |")
    if not any(r.ratios for r in runs):
        lines.append("| | (no ratios were read from this run's output) | | | |")
    lines.append("")
    for script, png in plots:
        lines += [f"![{script} ratios]({png})", ""]
    lines += ["## Every benchmark's output", ""]
    for r in runs:
        status = "ok" if r.code == 0 else ("stopped (timeout)" if r.code is None
                                           else f"exit code {r.code}")
        lines += [
            f"### {r.script}",
            "",
            f"`python benchmarks/{r.script}.py {' '.join(r.argv[2:])}` — "
            f"{r.seconds:.0f} s, {status}.",
            "",
            "```text",
            r.output.strip().replace("```", "'''") or "(no output)",
            "```",
            "",
        ]
    return "\n".join(lines)


def shared_note(load: tuple[float, float]) -> list[str]:
    cores = os.cpu_count() or 1
    if max(load) <= cores:
        return []
    return [f"**This machine was shared and loaded while the report was made** (load average "
            f"{max(load):.1f} on {cores} cores): absolute figures are lower and noisier than on "
            "an idle machine; the ratios, taken round by round, are what to read.", ""]


def failed_note(runs: list[Run]) -> list[str]:
    failed = [r.script for r in runs if r.code != 0]
    if not failed:
        return []
    return ["Benchmarks that did not finish cleanly in this run (their output below says why): "
            + ", ".join(f"`{name}`" for name in failed) + ".", ""]


def rerun_from(report_path: Path) -> tuple[list[Run], tuple[float, float]]:
    """The runs a previous report holds (its output sections), to render them again."""
    text = report_path.read_text(encoding="utf-8")
    load = re.search(r"load average \(1 min\) \| ([\d.]+) before, ([\d.]+) after", text)
    runs = []
    for m in re.finditer(r"^### (\S+)\n\n`python (\S+)(.*?)` — (\d+) s, ([^\n]*)\.\n\n```text\n"
                         r"(.*?)\n```", text, re.S | re.M):
        code = 0 if m.group(5) == "ok" else (None if "timeout" in m.group(5)
                                             else int(m.group(5).split()[-1]))
        run_ = Run(m.group(1), [sys.executable, m.group(2), *m.group(3).split()],
                   float(m.group(4)), code, m.group(6))
        run_.ratios = ratios_of(run_.script, run_.output)
        runs.append(run_)
    return runs, ((float(load.group(1)), float(load.group(2))) if load else (0.0, 0.0))


def updated_info(report_path: Path, now: dict[str, str], scripts: list[str]) -> dict[str, str]:
    """The machine table of a report some of whose scripts ran again (``--update``): the
    first run's date and commit stay, a ``rerun`` row says which scripts ran when."""
    old = dict(re.findall(r"^\| ([^|]+?) \| ([^|]+?) \|$", report_path.read_text("utf-8"),
                          re.M))
    info = {key: old.get(key, value) for key, value in now.items()}
    rerun = f"{', '.join(scripts)} at {now['iii_rx commit']}, {now['date (UTC)']}"
    info["rerun"] = f"{old['rerun']}; {rerun}" if "rerun" in old else rerun
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="each script's default settings")
    parser.add_argument("--only", help="comma-separated script names (default: all)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "performance.md"))
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per script")
    parser.add_argument("--rerender", action="store_true",
                        help="run nothing: render --out again from the outputs it holds")
    parser.add_argument("--update", action="store_true",
                        help="with --only: run those scripts, keep the other outputs --out holds")
    args = parser.parse_args(argv)
    if args.update and not args.only:
        parser.error("--update needs --only")
    if args.rerender:
        runs, load = rerun_from(Path(args.out))
        rows = re.findall(r"^\| ([^|]+?) \| ([^|]+?) \|$", Path(args.out).read_text("utf-8"),
                          re.M)
        info = dict(rows[1:7])
        info.update((key, value) for key, value in rows if key == "rerun")
        img = ROOT / "docs" / "img" / "performance"
        shutil.rmtree(img, ignore_errors=True)
        plots = plot(runs, img)
        full = "short mode" not in Path(args.out).read_text("utf-8")
        Path(args.out).write_text(report(runs, info, load, full, plots) + "\n", encoding="utf-8")
        print(f"rendered {args.out} again from {len(runs)} outputs")
        return 0
    only = set(args.only.split(",")) if args.only else None
    chosen = scripts(only)
    if not chosen:
        parser.error(f"no benchmark named {args.only}")
    load_before = os.getloadavg()[0]
    runs = [run(script, args.full, args.timeout) for script in chosen]
    load_after = os.getloadavg()[0]
    info = machine()
    if args.update:  # the fresh outputs take the place of the old ones, in the old order
        fresh = {r.script: r for r in runs}
        kept, _ = rerun_from(Path(args.out))
        runs = [fresh.pop(r.script, r) for r in kept] + list(fresh.values())
        info = updated_info(Path(args.out), info, chosen)
    img = ROOT / "docs" / "img" / "performance"
    shutil.rmtree(img, ignore_errors=True)
    plots = plot(runs, img)
    text = report(runs, info, (load_before, load_after), args.full, plots)
    Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(f"wrote {args.out} and {len(plots)} plots in {img}")
    return 0 if all(r.code == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
