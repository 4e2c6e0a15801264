"""The process's resident set size, cheap enough for ComfyUI's worker thread."""

from __future__ import annotations

import os
from typing import Any

_psutil_process: Any | None = None
_psutil_checked = False


_STATM_FD: int | None = None
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def read_process_rss_bytes() -> int | None:
    """Resident set size of this process. On Linux one pread of a /proc/self/statm descriptor kept open (a single
    cheap syscall, safe on the worker thread); elsewhere psutil when installed (imported once); else None."""
    global _psutil_process, _psutil_checked, _STATM_FD
    try:
        if _STATM_FD is None and os.path.exists("/proc/self/statm"):
            _STATM_FD = os.open("/proc/self/statm", os.O_RDONLY)
        if _STATM_FD is not None:
            return int(os.pread(_STATM_FD, 128, 0).split()[1]) * _PAGE_SIZE
        if not _psutil_checked:
            _psutil_checked = True
            import psutil

            _psutil_process = psutil.Process()
        if _psutil_process is not None:
            return int(_psutil_process.memory_info().rss)
    except Exception:
        return None
    return None
