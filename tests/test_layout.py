"""The package's layout keeps the sidecar free of the web side."""

from __future__ import annotations

import subprocess
import sys


def test_the_sidecar_never_imports_flask():
    code = "import sys, lens, lens.features, lens.media.app; print('flask' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
