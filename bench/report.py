"""Figures: percentiles, the machine they were measured on, the table and the JSON."""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def summary(values: Sequence[float]) -> dict[str, float | int]:
    return {
        "count": len(values),
        "p50": percentile(values, 0.50),
        "p99": percentile(values, 0.99),
        "max": max(values) if values else math.nan,
    }


def shown_spread(figures: dict[str, Any], digits: int = 1) -> str:
    """`median (min-max)` of a figure measured over several rounds."""
    median, low, high = figures["median"], figures["min"], figures["max"]
    if math.isnan(median):
        return "n/a"
    return f"{median:,.{digits}f} ({low:,.{digits}f}-{high:,.{digits}f})"


def add_timeliness_rows(
    report: Report, label: str, figures: dict[str, Any], p99_target: float
) -> None:
    """Scenario 3's rows for one group of jobs scheduled ahead (`Harness.lateness`)."""
    scenario = f"3 timeliness, {label}"
    report.add(scenario, f"lateness p50 ({figures['count']} jobs)", figures["p50"], "s")
    report.add(
        scenario,
        "lateness p99",
        figures["p99"],
        "s",
        f"<= {p99_target:g} s",
        figures["p99"] <= p99_target,
    )
    report.add(scenario, "lateness max", figures["max"], "s")
    early = figures["early_starts"] + figures["engine_early_starts"]
    report.add(scenario, "jobs started early", early, "", "0", early == 0)


@dataclass
class Row:
    scenario: str
    metric: str
    value: float | int | str
    unit: str = ""
    target: str = ""
    met: bool | None = None  # None: reported, no target

    def shown_value(self) -> str:
        value = self.value
        if isinstance(value, float):
            if math.isnan(value):
                text = "n/a"
            elif self.unit == "s" and abs(value) < 10:
                text = f"{value:.3f}"
            elif abs(value) < 10:
                text = f"{value:.2f}"
            else:
                text = f"{value:,.1f}"
        else:
            text = f"{value:,}" if isinstance(value, int) else str(value)
        return f"{text} {self.unit}".rstrip()

    def shown_met(self) -> str:
        return {True: "met", False: "NOT MET", None: ""}[self.met]


@dataclass
class Report:
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    environment: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    finished_at: str = ""

    def add(self, *args: Any, **kwargs: Any) -> Row:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        return row

    def table(self) -> str:
        headers = ("scenario", "metric", "value", "target", "met")
        lines = [
            (row.scenario, row.metric, row.shown_value(), row.target, row.shown_met())
            for row in self.rows
        ]
        widths = [
            max(len(str(cell)) for cell in column) for column in zip(headers, *lines, strict=True)
        ]

        def render(cells: Sequence[str]) -> str:
            parts = [
                cell.rjust(width) if index == 2 else cell.ljust(width)
                for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
            ]
            return "| " + " | ".join(parts) + " |"

        separator = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
        return "\n".join([render(headers), separator, *(render(line) for line in lines)])

    def preamble(self) -> str:
        env = self.environment
        return (
            f"jobboard benchmark, {self.started_at} — {env.get('cpu_count')} cores "
            f"({env.get('cpu_model')}), {env.get('memory_gib')} GiB RAM, "
            f"load average at start {env.get('load_average_start')}; Python "
            f"{env.get('python')}, PostgreSQL {env.get('postgresql')} (autovacuum "
            f"{env.get('autovacuum')}), Procrastinate "
            f"{env.get('procrastinate')}; {self.settings.get('summary', '')}"
        )

    def write_json(self, path: Path) -> None:
        payload = {
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "environment": self.environment,
            "settings": self.settings,
            "summary": self.summary,
            "results": [asdict(row) for row in self.rows],
            "details": self.details,
        }
        text = json.dumps(_without_nan(payload), indent=2, default=str, allow_nan=False)
        path.write_text(text + "\n")


def _without_nan(value: Any) -> Any:
    """NaN (a figure that could not be measured) as JSON null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(key): _without_nan(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nan(item) for item in value]
    return value


def machine() -> dict[str, Any]:
    """Cores, RAM, CPU model and load: what the figures depend on."""
    memory_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    except OSError:
        pass
    cpu_model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "procrastinate": version("procrastinate"),
        "gunicorn": version("gunicorn"),
        "load_average_start": load_average(),
    }


def load_average() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "n/a"
