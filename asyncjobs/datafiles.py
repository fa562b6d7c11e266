"""Files a job may open: only those inside one configured data directory.

A job's arguments come from whoever can enqueue (over HTTP too), so a job that opens a path it
is given must not read whatever the worker can read (``/proc/self/environ``, ``/etc/passwd``,
``settings.py``). :class:`DataDir` resolves the path the real way (``..`` and symlinks
included), opens only a regular file inside the directory, and refuses everything else with one
:class:`~asyncjobs.errors.PathNotAllowed` that says nothing about what lies outside.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from asyncjobs.errors import ConfigError, PathNotAllowed

# a FIFO must not block the open; a symlink swapped in after resolving must not be followed
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


class DataDir:
    """The directory jobs read files from (``ASYNCJOBS_DATA_DIR`` in ``settings.py``)::

    with data_dir.open(path) as f:   # path relative to the directory, or inside it
        ...
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        real = os.path.realpath(root)
        if not os.path.isdir(real):
            raise ConfigError(
                f"data directory {os.fspath(root)!r} is not a directory: create it or point ASYNCJOBS_DATA_DIR at one",
                key="ASYNCJOBS_DATA_DIR",
            )
        self.root = real

    def __repr__(self) -> str:
        return f"DataDir({self.root!r})"

    def resolve(self, path: object) -> str:
        """The real path of the regular file ``path`` names inside the directory, or
        :class:`PathNotAllowed` (the same error whether it is missing or outside)."""
        if not isinstance(path, str) or not path or "\x00" in path:
            raise PathNotAllowed(path)
        real = os.path.realpath(os.path.join(self.root, path))
        if os.path.commonpath([self.root, real]) != self.root or not os.path.isfile(real):
            raise PathNotAllowed(path)
        return real

    def open(self, path: object) -> BinaryIO:
        """Open the file ``path`` names inside the directory for binary reading."""
        real = self.resolve(path)
        try:
            fd = os.open(real, _OPEN_FLAGS)
        except OSError:
            raise PathNotAllowed(path) from None  # the OSError would name the real path
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise PathNotAllowed(path)
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise


def data_dir_of(value: DataDir | str | os.PathLike[str] | None) -> DataDir:
    """The :class:`DataDir` a job was configured with (``ctx["data_dir"]``, set in
    ``on_startup``), or :class:`PathNotAllowed` saying how to configure one."""
    if value is None:
        raise PathNotAllowed(
            None, "this job reads files only from a data directory, and none is configured: set ASYNCJOBS_DATA_DIR"
        )
    return value if isinstance(value, DataDir) else DataDir(value)
