"""Private directories for passfiles, ssh configs and restore downloads, inside the configured `temp_dir`.

The directory we create is 0700, but that alone is not enough: if someone else may write to `temp_dir` and it
has no sticky bit, they can rename our directory away and put a symlink in its place before the passfile is
written. So `temp_dir` itself must be ours (or root's) and not writable by others, unless it is sticky like /tmp.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from easybackup.errors import EasybackupError


def check_base(base: Path) -> None:
    """Given temp_dir, raise EasybackupError (kind config) if another user could swap what we create inside it."""
    info = os.lstat(base)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise EasybackupError(f"temp_dir {base} is not a plain directory", "it is a symlink or not a directory",
                              "point temp_dir at a directory owned by the easybackup user", kind="config")
    foreign_owner = info.st_uid not in (os.geteuid(), 0)
    others_may_write = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not info.st_mode & stat.S_ISVTX
    if foreign_owner or others_may_write:
        why = f"owned by uid {info.st_uid}" if foreign_owner else f"writable by others (mode {info.st_mode & 0o7777:o})"
        raise EasybackupError(f"temp_dir {base} is not safe for passfiles", f"it is {why} without the sticky bit",
                              f"chown it to this user and chmod 700 {base}, or use a fresh temp_dir", kind="config")


def make_private_dir(temp_dir: str, prefix: str) -> Path:
    """Given temp_dir and a name prefix, create temp_dir if needed (0700), check it, and return a new 0700
    directory inside it; raise EasybackupError (kind config) if temp_dir is unsafe."""
    base = Path(temp_dir)
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    check_base(base)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))
