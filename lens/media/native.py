"""The sidecar's native steps (``_native.c``): built, found and switched here, in one place.

Every packet the sidecar forwards is read, decrypted, parsed, rewritten, written, kept for
the technician's NACKs, SRTP-protected and sent. In Python each of those is a layer of
interpreter work around a system call, a cffi call into libsrtp, struct or a join. The
extension does them in one C call each (``receive``, ``parse_rtp``, ``forward``,
``send_rtp``), on libsrtp's own functions and the legs' contexts (pylibsrtp's, as
``srtp.FastSrtp`` uses them) and the sockets' descriptors. ``lens/media/README.md`` (9.)
says where each stands in for its Python twin; ``BENCHMARKS.md`` what it saves.

The Python twins stay, used wherever the native steps are not: the extension is not built
(no C compiler or Python headers), ``LENS_MEDIA_NATIVE=0`` (comparison runs, tests of the
fallback), a transport without a descriptor (TURN), an address it does not parse, what
``forward`` declines.

    python -c 'from lens.media.native import main; main([])'           # build it if the
        # source is newer than the built module (bin/setup does; "--force": build anyway)
    python -c 'from lens.media.native import main; main(["--check"])'  # does it load?
"""

from __future__ import annotations

import importlib
import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

from pylibsrtp import ffi, lib

SOURCE = Path(__file__).with_name("_native.c")
TARGET = Path(__file__).with_name("_native" + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))


def _address(name: str) -> int:
    return int(ffi.cast("uintptr_t", ffi.addressof(lib, name)))


# libsrtp's calls in pylibsrtp's copy of it, as addresses the extension calls
PROTECT = _address("srtp_protect")
UNPROTECT = _address("srtp_unprotect")
UNPROTECT_RTCP = _address("srtp_unprotect_rtcp")


def enabled() -> bool:
    """False when ``LENS_MEDIA_NATIVE=0`` asks for the Python path."""
    return os.environ.get("LENS_MEDIA_NATIVE", "1") != "0"


def load() -> ModuleType | None:
    """The extension, or None (not built, or switched off): the Python path is used."""
    if not enabled():
        return None
    try:
        return importlib.import_module("lens.media._native")
    except ImportError:
        return None


def build(force: bool = False) -> bool:
    """Compile ``_native.c`` next to it unless the built module is newer; True if the
    module is there afterwards. Needs a C compiler and the interpreter's headers."""
    if not force and TARGET.exists() and TARGET.stat().st_mtime >= SOURCE.stat().st_mtime:
        return True
    include = sysconfig.get_paths()["include"]
    if not Path(include, "Python.h").exists():
        print(f"lens.media.native: no Python.h in {include}: not built", file=sys.stderr)
        return False
    compiler = shlex.split(sysconfig.get_config_var("CC") or "cc")
    partial = TARGET.with_suffix(".part")
    command = [
        *compiler,
        "-O2",
        "-fPIC",
        "-shared",
        "-Wall",
        "-Werror",
        f"-I{include}",
        str(SOURCE),
        "-o",
        str(partial),
    ]
    try:
        subprocess.run(command, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"lens.media.native: not built ({exc})", file=sys.stderr)
        partial.unlink(missing_ok=True)
        return False
    partial.replace(TARGET)  # (a running sidecar keeps the module it loaded)
    return True


def main(argv: list[str]) -> int:
    if "--check" in argv:
        module = load()
        print("native steps:", "loaded" if module else "not used (the Python twins)")
        return 0 if module else 1
    return 0 if build(force="--force" in argv) else 1
