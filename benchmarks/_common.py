"""What every benchmark script shares: a description of the machine and the writer of its own section
of BENCHMARKS.md (each script owns one section between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``)."""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEADER = ("# Benchmarks\n\nFigures recorded by the scripts in `benchmarks/` (each owns one marked section). "
          "Absolute times depend on the machine and its load; compare the ratios against peers measured in the "
          "same run.\n")


def load_average() -> str:
    """``"1.00 / 0.90 / 0.80 (1 / 5 / 15 min)"``, or ``"?"`` where the OS does not say."""
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"
    except OSError:
        return "?"


def machine() -> dict[str, str]:
    """CPU model, cores, RAM, OS, load average and the date, for the record."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as info:
            ram = f"{int(info.readline().split()[1]) / 1024**2:.1f} GiB"
    except OSError:
        ram = "?"
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"cpu": cpu, "cores": f"{os.cpu_count()} logical ({usable} usable)", "ram": ram,
            "os": f"{platform.system()} {platform.release()}", "load": load_average(),
            "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M")}


def write_section(name: str, section: str) -> Path:
    """Replace the ``name`` section of BENCHMARKS.md (re-read right before writing: other scripts own the
    other sections), or append it; ``section`` includes its own start and end markers."""
    path = REPO / "BENCHMARKS.md"
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else HEADER
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
    return path
