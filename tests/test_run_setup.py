"""bin/run sets up only when it must: a production start installs nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tree(tmp_path: Path) -> Path:
    """A copy of bin/run with a stand-in bin/setup and .venv/bin/python that leave marks."""
    (tmp_path / "bin").mkdir()
    shutil.copy(ROOT / "bin" / "run", tmp_path / "bin" / "run")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    python = tmp_path / ".venv" / "bin" / "python"
    python.write_text('#!/bin/sh\necho python "$@" >> "$(dirname "$0")/../../marks"\n')
    setup = tmp_path / "bin" / "setup"
    setup.write_text(
        '#!/bin/sh\ncd "$(dirname "$0")/.."\necho setup >> marks\ntouch .venv/.lens-installed\n'
    )
    for script in (python, setup):
        script.chmod(0o755)
    for name in ("pyproject.toml", "requirements.lock"):
        (tmp_path / name).write_text("")
    old = time.time() - 60
    for name in ("pyproject.toml", "requirements.lock"):
        os.utime(tmp_path / name, (old, old))
    (tmp_path / ".venv" / ".lens-installed").write_text(".\n")
    return tmp_path


def run(root: Path) -> list[str]:
    marks = root / "marks"
    marks.unlink(missing_ok=True)
    subprocess.run(["bash", str(root / "bin" / "run"), "web"], check=True, cwd=root)
    return marks.read_text().split("\n")[:-1]


def test_a_set_up_install_starts_without_installing(tmp_path):
    root = tree(tmp_path)
    assert run(root) == ["python -m lens.run web"]


def test_a_changed_lock_file_sets_up_once_then_not_again(tmp_path):
    root = tree(tmp_path)
    (root / "requirements.lock").write_text("flask==9\n")  # newer than the stamp
    assert run(root) == ["setup", "python -m lens.run web"]
    assert run(root) == ["python -m lens.run web"]


def test_a_fresh_clone_sets_up_first(tmp_path):
    root = tree(tmp_path)
    (root / ".venv" / ".lens-installed").unlink()
    assert run(root)[0] == "setup"
