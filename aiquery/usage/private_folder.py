"""Folders and files that hold usage records: this user's alone.

A usage record names the requester, the endpoint, the tokens and the cost of a request; a file in a journal
folder is delivered to the ledger as this application's own. So a journal folder is created ``0700`` (and so is
every missing parent aiquery creates on the way), its files ``0600``, and a folder that already exists is used
only when it belongs to this user and no other user can write to it: someone who could would read the records,
or plant ``usage-*.json`` files the application forwards as its own. A folder of this user's that others can
merely read is tightened to ``0700``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from aiquery.errors import ConfigError

__all__ = ["FILE_MODE", "FOLDER_MODE", "SPOOL_FIX", "UnsafeFolder", "private_folder"]

FOLDER_MODE = 0o700
FILE_MODE = 0o600
"""The mode journal files are created with (``os.open``'s mode; a umask can only take bits away)."""
SPOOL_FIX = "remove it (aiquery creates it again), or set [usage] dir to a folder of your own"
"""What to do about a refused spool folder of the driver's ledger."""


class UnsafeFolder(ConfigError):
    """A folder for usage records belongs to another user, or other users can write to it."""


def private_folder(path: str | os.PathLike[str], *, fix: str, root: str | os.PathLike[str] | None = None) -> Path:
    """``path``, created ``0700`` with its missing parents, or checked if it exists; every folder from ``root``
    (``path`` itself when None) down to ``path`` is checked the same way.

    Args:
        path: the folder.
        fix: what the user can do when it is refused (ends the message), e.g. "set [usage] dir to a folder of
            your own".
        root: the highest folder that must be private too (an ancestor of ``path``).

    Raises:
        UnsafeFolder: a checked folder is not a folder, belongs to another user, or can be written by others.
    """
    folder = Path(path)
    top = Path(root) if root is not None else folder
    checked = [folder, *(parent for parent in folder.parents if top in (parent, *parent.parents))]
    for each in reversed(checked):  # from the top: nothing is created inside a folder that is refused
        if os.path.lexists(each):
            _check(each, fix)
            continue
        for created in reversed([each, *(p for p in each.parents if not os.path.lexists(p))]):
            try:
                os.mkdir(created, FOLDER_MODE)
            except FileExistsError:  # another process made it first: checked below like any existing one
                continue
            os.chmod(created, FOLDER_MODE)  # a umask such as 0o777 would have left it unusable
        _check(each, fix)
    return folder


def _check(folder: Path, fix: str) -> None:
    info = os.stat(folder)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeFolder(f"{folder} is not a folder: aiquery keeps usage records there; {fix}")
    me = os.geteuid()
    if info.st_uid != me:
        raise UnsafeFolder(
            f"{folder} belongs to uid {info.st_uid}, not to this user (uid {me}): another user could read the "
            f"usage records aiquery keeps there, or plant records of their own; {fix}"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        raise UnsafeFolder(
            f"{folder} can be written by other users (mode {mode:04o}): they could plant usage records aiquery "
            f"would take as its own; {fix}"
        )
    if mode & 0o077:
        os.chmod(folder, FOLDER_MODE)  # ours, readable by others: the records in it are not theirs to read
