"""Owner-only files and folders: what the pack creates (its data folder, the SQLite database and its `-wal` and
`-shm`, the config file) is readable by its owner alone.

Used by `store.database` (the SQLite file), the plugin (its data folder) and the config code (the config file,
through `write_private_file`). SQLite creates `-wal` and `-shm` with the database file's own mode, so a database
file created 0600 keeps its companions 0600 too.
"""

from __future__ import annotations

import os
import tempfile

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def ensure_private_dir(path: str) -> str:
    """Create `path` (and missing parents) as 0700; an existing folder is narrowed to 0700. Returns the path."""
    path = os.path.abspath(path)
    os.makedirs(path, mode=PRIVATE_DIR_MODE, exist_ok=True)
    if os.stat(path).st_mode & 0o777 != PRIVATE_DIR_MODE:
        os.chmod(path, PRIVATE_DIR_MODE)
    return path


def create_private_file(path: str) -> bool:
    """Create an empty 0600 file at `path` unless one exists (never truncates). True if it was created."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)  # whatever the umask
    finally:
        os.close(fd)
    return True


def write_private_file(path: str, text: str, encoding: str = "utf-8") -> None:
    """Replace `path` with `text` atomically (a temporary file in the same folder, fsynced, then renamed), 0600.

    A reader sees the old content or the new one, never a part; a crash leaves the old file in place."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, mode=PRIVATE_DIR_MODE, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding=encoding) as handle:
            os.fchmod(handle.fileno(), PRIVATE_FILE_MODE)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
