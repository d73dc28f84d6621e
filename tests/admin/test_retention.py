"""`flask lens purge`: snapshots and recordings older than the retention period are deleted."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from lens.admin.models import Setting
from lens.auth.models import Technician
from lens.captures.models import Recording, Snapshot
from lens.extensions import db
from lens.sessions import lifecycle
from lens.sessions.models import SessionEvent
from lens.timeutil import now_utc


def captures(app, technician_id: int) -> tuple[Path, Path, Path]:
    """An old and a new snapshot, and an old recording, with their files."""
    instance = Path(app.instance_path)
    recordings = Path(app.config["LENS_RECORDINGS_PATH"])
    now = now_utc()
    with app.app_context():
        tess = db.session.get(Technician, technician_id)
        s = lifecycle.create_session(
            db.session,
            technician=tess,
            console="technician",
            customer_name="Jane",
            pin_validity=timedelta(minutes=20),
            now=now,
        )
        files = []
        for name, age in (("old.png", 40), ("new.png", 1)):
            path = instance / "captures" / str(s.id) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"png")
            files.append(path)
            db.session.add(
                Snapshot(
                    lens_session=s, technician=tess, created_at=now - timedelta(days=age),
                    path=path.relative_to(instance).as_posix(), width=1, height=1, bytes=3,
                )
            )  # fmt: skip
        video = recordings / str(s.id) / "old.webm"
        video.parent.mkdir(parents=True, exist_ok=True)
        video.write_bytes(b"webm")
        db.session.add(
            Recording(
                lens_session=s, technician=tess, started_at=now - timedelta(days=41),
                stopped_at=now - timedelta(days=40), path=f"{s.id}/old.webm",
            )
        )  # fmt: skip
        db.session.commit()
    return files[0], files[1], video


def test_purge_keeps_everything_without_a_retention_period(app, runner, technician):
    old, new, video = captures(app, technician)
    result = runner.invoke(args=["lens", "purge"])
    assert "deleted 0 snapshot(s) and 0 recording(s)" in result.output
    assert old.exists() and new.exists() and video.exists()


def test_purge_deletes_what_is_older_than_the_retention_period(app, runner, technician):
    old, new, video = captures(app, technician)
    with app.app_context():
        db.session.add(Setting(key="LENS_RETENTION_DAYS", value=30))
        db.session.commit()
    dry = runner.invoke(args=["lens", "purge", "--dry-run"])
    assert "would delete 1 snapshot(s) and 1 recording(s)" in dry.output and old.exists()
    result = runner.invoke(args=["lens", "purge"])
    assert result.exit_code == 0, result.output
    assert "deleted 1 snapshot(s) and 1 recording(s)" in result.output
    assert not old.exists() and not video.exists() and new.exists()
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Snapshot)) == 1
        assert db.session.scalar(select(func.count()).select_from(Recording)) == 0
        purged = select(func.count()).where(SessionEvent.kind == "capture_purged")
        assert db.session.scalar(purged) == 2
