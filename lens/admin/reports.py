"""Reports: the sessions of a period, filtered, as rows, CSV/JSON and summary charts.

Sessions of the Web Console never appear (the product manual: "sessions started in the
Web Console are not included in reports"), nor do sessions whose feature set lacks
reporting.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session

from lens.auth.models import Technician
from lens.captures.models import Recording, Snapshot
from lens.chat.models import ChatMessage
from lens.features import WEB_CONSOLE
from lens.sessions.models import LensSession, SessionEvent

MAX_DAYS = 366
MAX_ROWS = 5000


@dataclass
class ReportFilter:
    """What the report's form asked for (already checked)."""

    start: date
    end: date  # inclusive
    technician_id: int | None = None
    group_id: int | None = None
    channel: str | None = None
    state: str | None = None
    console: str | None = None

    @property
    def since(self) -> datetime:
        return datetime.combine(self.start, time.min)

    @property
    def until(self) -> datetime:
        return datetime.combine(self.end + timedelta(days=1), time.min)


@dataclass
class ReportRow:
    """One session as the report shows it."""

    session: LensSession
    technicians: list[str]
    chat_messages: int
    snapshots: int
    recordings: int
    waited: timedelta | None = field(default=None)
    duration: timedelta | None = field(default=None)


def _count(model: Any):
    return (
        select(func.count())
        .where(model.session_id == LensSession.id)
        .correlate(LensSession)
        .scalar_subquery()
    )


def report_query(report: ReportFilter):
    """The sessions the filter selects, oldest first, with their counts."""
    query = (
        select(
            LensSession,
            _count(ChatMessage).label("chat_messages"),
            _count(Snapshot).label("snapshots"),
            _count(Recording).label("recordings"),
        )
        .where(
            LensSession.console != WEB_CONSOLE,
            LensSession.created_at >= report.since,
            LensSession.created_at < report.until,
        )
        .order_by(LensSession.created_at, LensSession.id)
    )
    if report.technician_id:
        # the session's technician now, or one who handled it before a transfer
        took_part = exists().where(
            SessionEvent.session_id == LensSession.id,
            SessionEvent.actor == f"technician:{report.technician_id}",
        )
        query = query.where(or_(LensSession.technician_id == report.technician_id, took_part))
    if report.group_id:
        query = query.join(Technician, Technician.id == LensSession.technician_id).where(
            Technician.group_id == report.group_id
        )
    if report.channel:
        query = query.where(LensSession.channel == report.channel)
    if report.state:
        query = query.where(LensSession.state == report.state)
    if report.console:
        query = query.where(LensSession.console == report.console)
    return query.limit(MAX_ROWS)


def _technicians(lens_session: LensSession) -> list[str]:
    """Who handled the session, in order: the first technician, then each receiver."""
    transfers = [_handed(e) for e in lens_session.events if e.kind == "transfer"]
    transfers = [t for t in transfers if t is not None]
    if not transfers:
        return [lens_session.technician.name]
    return [transfers[0][0]] + [to for _from, to in transfers]


def _handed(event: SessionEvent) -> tuple[str, str] | None:
    """(from, to) of a transfer's log line: its data, or the older "<from>\n<to>" detail."""
    if event.data and "from" in event.data and "to" in event.data:
        return str(event.data["from"]), str(event.data["to"])
    if event.detail and "\n" in event.detail:
        giver, _sep, receiver = event.detail.partition("\n")
        return giver, receiver
    return None


def _reports(lens_session: LensSession) -> bool:
    permissions = lens_session.permissions
    return permissions is None or "reporting" in permissions


def report_rows(db: Session, report: ReportFilter) -> list[ReportRow]:
    rows = []
    for lens_session, chats, snapshots, recordings in db.execute(report_query(report)):
        if not _reports(lens_session):
            continue
        waited = (
            lens_session.started_at - lens_session.accepted_at
            if lens_session.started_at and lens_session.accepted_at
            else None
        )
        duration = (
            lens_session.ended_at - lens_session.started_at
            if lens_session.started_at and lens_session.ended_at
            else None
        )
        rows.append(
            ReportRow(
                lens_session,
                _technicians(lens_session),
                chats,
                snapshots,
                recordings,
                waited,
                duration,
            )
        )
    return rows


COLUMNS = (
    "session_id",
    "customer_name",
    "custom_fields",
    "technicians",
    "console",
    "channel",
    "state",
    "created",
    "waited_seconds",
    "started",
    "duration_seconds",
    "end_reason",
    "chat_messages",
    "snapshots",
    "recordings",
)


def _iso(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else ""


def _seconds(span: timedelta | None) -> int | str:
    return int(span.total_seconds()) if span is not None else ""


def as_record(row: ReportRow) -> dict[str, Any]:
    """A row as plain values, for CSV and JSON."""
    s = row.session
    return {
        "session_id": s.public_id,
        "customer_name": s.customer_name,
        "custom_fields": json.dumps(s.custom_fields or {}, ensure_ascii=False, sort_keys=True),
        "technicians": " > ".join(row.technicians),
        "console": s.console,
        "channel": s.channel,
        "state": s.state,
        "created": _iso(s.created_at),
        "waited_seconds": _seconds(row.waited),
        "started": _iso(s.started_at),
        "duration_seconds": _seconds(row.duration),
        "end_reason": s.end_reason or "",
        "chat_messages": row.chat_messages,
        "snapshots": row.snapshots,
        "recordings": row.recordings,
    }


def _cell(value: Any) -> Any:
    """A cell a spreadsheet will not run as a formula (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def to_csv(rows: Iterable[ReportRow]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in as_record(row).items()})
    return out.getvalue()


def to_json(rows: Iterable[ReportRow]) -> str:
    return json.dumps([as_record(row) for row in rows], ensure_ascii=False, indent=1)


# ----- summary ----------------------------------------------------------------------------


def _median_minutes(spans: list[timedelta]) -> float | None:
    if not spans:
        return None
    return round(statistics.median(s.total_seconds() for s in spans) / 60, 1)


def summary(rows: list[ReportRow], report: ReportFilter) -> dict[str, Any]:
    """Sessions per day, and per technician: count, median waiting time and duration."""
    per_day = Counter(row.session.created_at.date() for row in rows)
    days = []
    day = report.start
    while day <= report.end and len(days) < MAX_DAYS:
        days.append((day, per_day.get(day, 0)))
        day += timedelta(days=1)
    waits: dict[str, list[timedelta]] = defaultdict(list)
    durations: dict[str, list[timedelta]] = defaultdict(list)
    counts: Counter[str] = Counter()
    for row in rows:
        name = row.session.technician.name
        counts[name] += 1
        if row.waited is not None:
            waits[name].append(row.waited)
        if row.duration is not None:
            durations[name].append(row.duration)
    technicians = [
        {
            "name": name,
            "sessions": counts[name],
            "median_wait": _median_minutes(waits[name]),
            "median_duration": _median_minutes(durations[name]),
        }
        for name in sorted(counts)
    ]
    all_waits = [w for spans in waits.values() for w in spans]
    all_durations = [d for spans in durations.values() for d in spans]
    return {
        "days": days,
        "technicians": technicians,
        "total": len(rows),
        "median_wait": _median_minutes(all_waits),
        "median_duration": _median_minutes(all_durations),
    }


def bar_chart(
    bars: list[tuple[str, float | None]], *, width: int = 640, bar: int = 18, unit: str = ""
) -> dict[str, Any]:
    """Geometry of a horizontal bar chart, for the SVG template."""
    values = [v for _, v in bars if v is not None]
    top = max(values) if values else 0
    label_width = 160
    room = width - label_width - 60
    items = []
    for index, (label, value) in enumerate(bars):
        length = 0 if not top or value is None else max(1, round(room * value / top))
        items.append(
            {
                "label": label,
                "value": "–" if value is None else f"{value:g}{unit}",
                "y": index * (bar + 6),
                "length": length,
            }
        )
    return {
        "width": width,
        "height": max(1, len(bars)) * (bar + 6),
        "bar": bar,
        "label_width": label_width,
        "items": items,
    }


def column_chart(days: list[tuple[date, int]], *, width: int = 640, height: int = 160) -> dict:
    """Geometry of a column chart of sessions per day."""
    top = max((count for _, count in days), default=0)
    step = width / max(1, len(days))
    columns = []
    for index, (day, count) in enumerate(days):
        h = 0 if not top else round((height - 20) * count / top)
        columns.append(
            {
                "x": round(index * step, 1),
                "width": max(1.0, round(step * 0.8, 1)),
                "height": h,
                "y": height - 20 - h,
                "day": day.isoformat(),
                "count": count,
            }
        )
    return {"width": width, "height": height, "columns": columns, "top": top}


def technician_charts(summary_figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The three per-technician bar charts of the summary."""
    technicians = summary_figures["technicians"]
    return {
        key: bar_chart([(t["name"], t[key]) for t in technicians])
        for key in ("sessions", "median_wait", "median_duration")
    }
