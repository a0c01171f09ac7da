"""What a benchmark run produces, and how it is shown: rich tables, a Markdown file, a JSON file.

Every benchmark returns a :class:`Section` (tables, target checks, notes, query plans, raw
numbers); the run wraps them in a :class:`RunReport` with the machine and the settings, written
to ``bench/results/<date>-<host>[-quick][-<only>].{md,json}``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable

Cell = str | int | float | None


@dataclass
class Table:
    """One table of a section; numbers are formatted when shown, kept raw in JSON."""

    title: str
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)

    def add(self, *cells: Cell) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.title}: {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append(list(cells))


@dataclass
class Target:
    """A stated target and what was measured; ``note`` explains a miss (shortfall and cause)."""

    name: str
    target: str
    measured: str
    met: bool | None  # None: could not be measured in this run
    note: str = ""

    @property
    def verdict(self) -> str:
        return {True: "met", False: "MISSED", None: "n/a"}[self.met]


@dataclass
class Section:
    """The outcome of one benchmark."""

    name: str
    title: str
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plans: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    load_start: tuple[float, float, float] | None = None
    load_end: tuple[float, float, float] | None = None
    error: str | None = None


@dataclass
class RunReport:
    """A whole run: when, where, with which settings, and each benchmark's section."""

    started_at: str
    finished_at: str
    command: str
    machine: dict[str, Any]
    settings: dict[str, Any]
    sections: list[Section]
    notes: list[str] = field(default_factory=list)


def fmt(value: Cell) -> str:
    """Numbers to text: 3 significant-ish digits, integers with thousands separators."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value == 0:
            return "0"
        magnitude = abs(value)
        if magnitude >= 100:
            return f"{value:,.0f}"
        if magnitude >= 10:
            return f"{value:.1f}"
        if magnitude >= 0.1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan


# --- console ----------------------------------------------------------------------------------


def print_section(console: Console, section: Section) -> None:
    console.rule(f"[bold]{section.title}[/] ({section.seconds:.0f} s)")
    if section.error:
        console.print(f"[bold red]failed:[/] {section.error}")
    for table in section.tables:
        shown = RichTable(*table.columns, title=table.title, title_justify="left")
        for row in table.rows:
            shown.add_row(*(fmt(cell) for cell in row))
        console.print(shown)
    if section.targets:
        shown = RichTable("target", "wanted", "measured", "verdict", "note", title="Targets")
        for target in section.targets:
            style = {True: "green", False: "bold red", None: "yellow"}[target.met]
            shown.add_row(
                target.name,
                target.target,
                target.measured,
                f"[{style}]{target.verdict}[/]",
                target.note,
            )
        console.print(shown)
    for note in section.notes:
        console.print(f"- {note}", highlight=False)


# --- files ------------------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_escape(c) for c in columns) + " |"]
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return lines


def _load(values: tuple[float, float, float] | None) -> str:
    return " / ".join(f"{v:.2f}" for v in values) if values else "-"


def render_markdown(report: RunReport) -> str:
    """The results file people read: machine, settings, then each benchmark."""
    lines = [f"# TeleAI Pro benchmark — {report.started_at}", ""]
    lines += [f"Command: `{report.command}`  ", f"Finished: {report.finished_at}", ""]
    lines += ["## Machine", ""]
    machine_rows = [[k, _plain(v)] for k, v in report.machine.items() if k != "packages"]
    lines += [*_md_table(["what", "value"], machine_rows), ""]
    packages = report.machine.get("packages", {})
    if packages:
        lines += ["### Package versions", ""]
        lines += _md_table(["package", "version"], [[k, str(v)] for k, v in packages.items()])
        lines += [""]
    lines += ["## Settings", ""]
    lines += _md_table(["setting", "value"], [[k, _plain(v)] for k, v in report.settings.items()])
    lines += [""]
    for note in report.notes:
        lines.append(f"- {note}")
    if report.notes:
        lines.append("")
    summary = [
        [s.title, t.name, t.target, t.measured, t.verdict, t.note]
        for s in report.sections
        for t in s.targets
    ]
    if summary:
        lines += ["## Targets", ""]
        lines += _md_table(
            ["benchmark", "target", "wanted", "measured", "verdict", "note"], summary
        )
        lines += [""]
    for section in report.sections:
        lines += _section_markdown(section)
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_plain(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items())
    return fmt(value) if isinstance(value, int | float) else str(value)


def _section_markdown(section: Section) -> list[str]:
    lines = [f"## {section.title}", ""]
    lines.append(
        f"Wall time {section.seconds:.0f} s; load average (1/5/15 min) at start "
        f"{_load(section.load_start)}, at end {_load(section.load_end)}."
    )
    lines.append("")
    if section.error:
        lines += [f"**Failed:** {section.error}", ""]
    for table in section.tables:
        lines += [f"### {table.title}", ""]
        lines += _md_table(table.columns, [[fmt(c) for c in row] for row in table.rows])
        lines += [""]
    if section.targets:
        lines += ["### Targets", ""]
        rows = [[t.name, t.target, t.measured, t.verdict, t.note] for t in section.targets]
        lines += [*_md_table(["target", "wanted", "measured", "verdict", "note"], rows), ""]
    if section.notes:
        lines += [f"- {note}" for note in section.notes] + [""]
    for name, plan in section.plans.items():
        lines += [
            f"<details><summary>Plan: {name}</summary>",
            "",
            "```",
            plan,
            "```",
            "",
            "</details>",
            "",
        ]
    return lines


def to_json(report: RunReport) -> dict[str, Any]:
    data = dataclasses.asdict(report)
    for section, raw in zip(report.sections, data["sections"], strict=True):
        raw["targets"] = [{**dataclasses.asdict(t), "verdict": t.verdict} for t in section.targets]
    return data


def results_stem(date: str, host: str, *, quick: bool, only: list[str] | None) -> str:
    """``<date>-<host>`` for a full run; quick and partial runs say so, so they never overwrite
    the full run's files."""
    stem = f"{date}-{host}"
    if quick:
        stem += "-quick"
    if only:
        stem += "-" + "-".join(only)
    return stem


def write_report(report: RunReport, directory: Path, stem: str) -> tuple[Path, Path]:
    """Write ``<stem>.md`` and ``<stem>.json`` into ``directory``; returns both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    markdown = directory / f"{stem}.md"
    as_json = directory / f"{stem}.json"
    markdown.write_text(render_markdown(report), encoding="utf-8")
    as_json.write_text(json.dumps(to_json(report), indent=2, default=str), encoding="utf-8")
    return markdown, as_json
