"""Files on disk, written safely and read defensively.

Writing: every writer in mogsgd (models, checkpoints, data sets, figures) goes
through :func:`atomic_write`: the content is written to a temporary file in the
target's own directory and then moved into place in one step, so a crash or a
full disk leaves either the old file or the new one, never a truncated mix.
Without ``force=True`` an existing file is refused with a :class:`FileExistsError`.
Temporary files are named ``.{name}.{pid}.{random}.partial{suffix}`` (a long name is
shortened with a hash so the temporary name fits ``NAME_MAX``); those left behind
by a process that no longer runs (``kill -9``) are removed on the next write.

Reading: :func:`check_regular_file` refuses FIFOs, devices and sockets *before*
anything opens them (opening a FIFO blocks, ``/dev/zero`` never ends), and
:func:`read_capped` reads at most a given number of bytes.  :func:`loads_json`
parses JSON of bounded size and nesting depth.

Locking: :func:`lock_paths` holds an exclusive advisory lock (``fcntl.flock`` on a
``.{name}.lock`` file next to each path) for as long as a fit uses the path, so a
second fit writing the same model or checkpoint is refused at its start.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

__all__ = ["check_writable", "atomic_write", "check_regular_file", "read_capped",
           "loads_json", "check_npy_header", "lock_paths", "PathLockedError", "sibling_name",
           "MAX_JSON_DEPTH"]

#: Deepest JSON nesting read back (mogsgd's own files nest about 8 deep).
MAX_JSON_DEPTH = 64
#: Longest name component written (a temporary or lock name adds ~40 characters to it).
_MAX_STEM = 120
_PARTIAL = re.compile(r"\.(?P<pid>\d+)\.[0-9a-f]{8}\.partial(\.[^.]*)?")


def sibling_name(target: Path, tag: str) -> Path:
    """``.{name}.{tag}`` next to ``target``, with a long ``name`` cut and hashed to fit NAME_MAX."""
    name = target.name
    if len(name.encode()) > _MAX_STEM:
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        name = name.encode()[:_MAX_STEM - 17].decode(errors="ignore") + "~" + digest
    return target.with_name(f".{name}.{tag}")


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
    if target.exists() and not stat.S_ISREG(target.stat().st_mode):
        raise OSError(f"{str(target)!r} is not a regular file (a FIFO, device or socket); "
                      "refusing to replace it: choose another file name")
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
    _remove_stale_partials(target)
    stem = sibling_name(target, "")
    suffix = target.suffix if len(target.suffix) <= 16 else ""
    tmp = stem.with_name(f"{stem.name}{os.getpid()}.{secrets.token_hex(4)}.partial{suffix}")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        yield tmp
        # the file is private (0o600) while written; give it the mode a plain open() would
        os.chmod(tmp, target.stat().st_mode & 0o7777 if target.exists() else _default_mode())
        if force:
            os.replace(tmp, target)
        else:
            _move_no_clobber(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _remove_stale_partials(target: Path) -> None:
    """Delete temporary files of ``target`` left by processes that no longer run."""
    stem = sibling_name(target, "")
    parent = stem.parent if str(stem.parent) else Path(".")
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(stem.name):
            continue
        m = _PARTIAL.fullmatch(entry.name[len(stem.name) - 1:])
        if m and not _pid_alive(int(m["pid"])):
            with contextlib.suppress(OSError):
                entry.unlink()


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


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


# ------------------------------------------------------------------- reading
def check_regular_file(path: str | os.PathLike, what: str = "file", *,
                       allow_dir: bool = False) -> os.stat_result:
    """``os.stat(path)`` after checking, without opening it, that it is a regular file
    (or, with ``allow_dir``, a directory).

    Raises ``FileNotFoundError`` for a missing path and ``OSError`` (one line naming the
    path and the fix) for a FIFO, device, socket or, without ``allow_dir``, a directory.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"{what} {str(path)!r} does not exist",
                                str(path)) from None
    if stat.S_ISREG(st.st_mode) or (allow_dir and stat.S_ISDIR(st.st_mode)):
        return st
    kind = "a directory" if stat.S_ISDIR(st.st_mode) else \
        "a FIFO" if stat.S_ISFIFO(st.st_mode) else \
        "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else \
        "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file"
    raise OSError(f"{what} {str(path)!r} is {kind}, not a regular file; give the path of "
                  f"a {what} on disk")


def read_capped(path: str | os.PathLike, what: str, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path``, refusing special files and files over
    ``max_bytes`` (``OSError``, one line).  Opened with ``O_NONBLOCK`` so that a path
    swapped for a FIFO after the check cannot block."""
    check_regular_file(path, what)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{what} {str(path)!r} is not a regular file")
        if st.st_size > max_bytes:
            raise OSError(f"{what} {str(path)!r} is {st.st_size} bytes, over the limit of "
                          f"{max_bytes}; is it really a mogsgd {what}?")
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise OSError(f"{what} {str(path)!r} is over the limit of {max_bytes} bytes")
    return data


_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')


def json_depth(raw: bytes) -> int:
    """Deepest nesting of ``[``/``{`` in the JSON text ``raw`` (strings ignored)."""
    import numpy as np

    bare = np.frombuffer(_STRINGS.sub(b'""', raw), dtype=np.uint8)
    step = (np.isin(bare, (ord("["), ord("{"))).astype(np.int64)
            - np.isin(bare, (ord("]"), ord("}"))))
    return int(np.cumsum(step).max(initial=0))


def loads_json(raw: bytes | str, what: str, *, max_depth: int = MAX_JSON_DEPTH,
               max_bytes: int = 1 << 30):
    """``json.loads`` refusing text over ``max_bytes`` or nesting deeper than ``max_depth``
    (``ValueError``, one line) instead of exhausting memory or raising ``RecursionError``;
    invalid JSON raises ``json.JSONDecodeError``."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if len(data) > max_bytes:
        raise ValueError(f"{what} is {len(data)} bytes, over the limit of {max_bytes}")
    depth = json_depth(data)
    if depth > max_depth:
        raise ValueError(f"{what} nests {depth} levels deep, more than the {max_depth} "
                         "allowed; it is not a file mogsgd wrote")
    text = raw if isinstance(raw, str) else raw.decode("utf-8")
    return json.loads(text)


def check_npy_header(fh, size: int, where: str) -> tuple:
    """Read a ``.npy`` header from ``fh`` and check that the ``size`` bytes after the magic
    hold the array it claims (a forged shape would make NumPy allocate it first).
    Returns ``(shape, dtype)``; raises :class:`DataFileError`."""
    import numpy as np
    from numpy.lib import format as npformat

    from mogsgd.errors import DataFileError

    try:
        version = npformat.read_magic(fh)
        read = {(1, 0): npformat.read_array_header_1_0,
                (2, 0): npformat.read_array_header_2_0}.get(version)
        if read is None:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, _, dtype = read(fh, max_header_size=10_000)
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise DataFileError(f"{where}: not a readable .npy header: {exc}") from None
    if dtype.hasobject:
        raise DataFileError(f"{where}: holds Python objects, not numbers")
    claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    available = size - fh.tell()
    if claimed > available:
        raise DataFileError(f"{where}: the header claims shape {shape} of {dtype} "
                            f"({claimed} bytes) but only {max(available, 0)} bytes follow "
                            "(corrupt or truncated?)")
    return shape, dtype


# ------------------------------------------------------------------- locking
class PathLockedError(OSError):
    """Another process holds the lock on a path (a concurrent fit uses it)."""


#: Locks held by this process: resolved path -> [fd, count] (re-entrant within a process:
#: flock locks of two open() calls conflict even in one process).
_HELD: dict[str, list] = {}


@contextlib.contextmanager
def lock_paths(*paths: str | os.PathLike | None, what: str = "fit") -> Iterator[None]:
    """Hold exclusive advisory locks on ``paths`` (``None`` entries are skipped) for the
    duration of the ``with`` block; raise :class:`PathLockedError` at once, naming the
    path and the other process, when one is held elsewhere.

    The lock is ``fcntl.flock`` on ``.{name}.lock`` beside the path (removed on release);
    it binds only programs that take it (every mogsgd fit does), and the kernel drops it
    when a process dies, so a killed fit never leaves a path locked.
    """
    with contextlib.ExitStack() as stack:
        seen = set()
        for p in paths:
            if p is None:
                continue
            key = os.path.realpath(p)
            if key in seen:
                continue
            seen.add(key)
            stack.enter_context(_lock_one(Path(key), what))
        yield


@contextlib.contextmanager
def _lock_one(path: Path, what: str) -> Iterator[None]:
    key = str(path)
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield
        finally:
            _HELD[key][1] -= 1
        return
    lock = sibling_name(path, "lock")
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            raise PathLockedError(
                f"{str(path)!r} is in use by another {what}{owner}; wait for it to finish "
                "or choose another file") from None
        except OSError:  # a file system without flock: go on unlocked
            os.close(fd)
            yield
            return
        try:  # the holder before us may have removed the lock file: lock the new one
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD[key] = [fd, 1]
    try:
        yield
    finally:
        del _HELD[key]
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def _read_owner(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (process {pid})" if pid.isdigit() else ""
