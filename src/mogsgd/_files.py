"""Writing files safely: never clobber by accident, never leave a half-written file.

Every writer in mogsgd (data sets, figures, animations) goes through
:func:`atomic_write`: the content is written to a temporary file in the target's
own directory and then moved into place in one step, so a crash or a full disk
leaves either the old file or the new one, never a truncated mix.  Without
``force=True`` an existing file is refused with a :class:`FileExistsError`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["check_writable", "atomic_write"]


def check_writable(path: str | os.PathLike, *, force: bool = False) -> Path:
    """Return ``path`` as a Path after checking that it may be written.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``force`` is false.
    IsADirectoryError
        ``path`` is a directory.
    FileNotFoundError
        The parent directory does not exist (it is not created for you).
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"{str(target)!r} is a directory, not a file name")
    if target.exists() and not force:
        raise FileExistsError(
            f"{str(target)!r} already exists; refusing to overwrite it "
            "(pass force=True, or --force on the command line, to replace it)"
        )
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(
            f"cannot write {str(target)!r}: directory {str(parent)!r} does not exist"
        )
    return target


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path``.

    The temporary file keeps the target's suffix (some writers, e.g. Pillow,
    choose the format from it).  Without ``force`` the final move uses a hard
    link, which fails if another process created ``path`` meanwhile, so an
    existing file is never replaced; with ``force`` it is ``os.replace``.
    On any exception the temporary file is removed and ``path`` is untouched.
    """
    target = check_writable(path, force=force)
    fd, tmp_name = tempfile.mkstemp(
        dir=target.parent if str(target.parent) else ".",
        prefix=f".{target.name}.",
        suffix=f".tmp{target.suffix}",
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file private (0o600); give it the mode a plain open() would
        os.chmod(tmp, target.stat().st_mode & 0o7777 if target.exists() else _default_mode())
        if force:
            os.replace(tmp, target)
        else:
            _move_no_clobber(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _move_no_clobber(tmp: Path, target: Path) -> None:
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise FileExistsError(
            f"{str(target)!r} appeared while it was being written; refusing to overwrite it "
            "(pass force=True to replace it)"
        ) from None
    except OSError:
        # file systems without hard links: fall back to check-then-replace
        if target.exists():
            raise FileExistsError(
                f"{str(target)!r} already exists; refusing to overwrite it (pass force=True)"
            ) from None
        os.replace(tmp, target)
