"""Editing the config file in place: the ``[route]`` table and ``[token NAME]`` sections.

:func:`edit_route` and :func:`edit_token` rewrite text, keeping comments and
order; :func:`save_route` and :func:`save_token` apply them to the file
atomically (:func:`replace_file`) under an exclusive lock (:func:`locked`).

Every value is written on its own line: :func:`check_value` refuses what
would start another line or a ``[section]``, in the editing functions
themselves, so every writer (the CLI, an API) is held to it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from salara.config.reader import SECTION_RE, build_tokens, is_comment, parse_text, section_name
from salara.config.schema import TOKEN_NAME, TOKEN_SECTION
from salara.errors import ConfigError

LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
"""What ends a line when the file is read (:meth:`str.splitlines`): CR, LF and the other Unicode line ends."""
_KEY = re.compile(r"[A-Za-z0-9_]{1,64}")


def check_value(section: str, key: str | None, value: str, what: str = "the value") -> str:
    """Return ``value`` if it can be written after ``key =`` and read back as that one value.

    Raises :class:`ConfigError` naming ``section`` and ``key`` when ``value``
    holds a line break (:data:`LINE_BREAKS`) or starts with ``[``: either
    would let a value write a ``[section]`` or a setting of its own.
    """
    if any(char in LINE_BREAKS for char in value):
        raise ConfigError(section, key, f"{what} may not hold a line break (CR, LF or another line end)")
    if value.lstrip().startswith("["):
        raise ConfigError(section, key, f"{what} may not start with '['")
    return value


# -- editing the route table in place ---------------------------------------


def edit_route(text: str, caller: str, called: str | None) -> str:
    """Return ``text`` with the ``[route]`` entry of ``caller`` set or removed.

    Comments, order and every other line stay as they are. ``called=None``
    deletes the entry. A missing ``[route]`` section is appended. Raises
    :class:`ConfigError` when ``caller`` or ``called`` fails :func:`check_value`.
    """
    check_value("route", None, caller, "the caller")
    if called is not None:
        check_value("route", caller, called, "the destination")
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    start = end = None
    section: str | None = None
    for index, line in enumerate(lines):
        match = SECTION_RE.match(line)
        if match:
            section = match.group(1).strip().lower()
            if section == "route" and start is None:
                start = end = index + 1
            continue
        if section == "route" and not is_comment(line):
            end = index + 1
    new_line = f"{caller}:{called}\n" if called is not None else None
    if start is None:
        if new_line is None:
            return "".join(lines)
        return "".join(lines) + f"[route]\n{new_line}"
    assert end is not None
    for index in range(start, len(lines)):
        line = lines[index]
        if SECTION_RE.match(line):
            break
        if not is_comment(line) and line.strip().partition(":")[0].strip() == caller:
            if new_line is None:
                del lines[index]
            else:
                lines[index] = new_line
            return "".join(lines)
    if new_line is not None:
        lines.insert(end, new_line)
    return "".join(lines)


def lock_path(path: Path) -> Path:
    """The lock file of the config file ``path``: ``.<name>.lock`` beside it."""
    return path.parent / f".{path.name}.lock"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on :func:`lock_path` of ``path`` (waits for other editors).

    Every rewrite of the file (:func:`save_route`, :func:`save_token`) reads
    and replaces it under this lock, so concurrent ``salara route set`` and
    ``token create/revoke`` runs never lose each other's change. Readers need
    no lock: a rewrite is an atomic rename.
    """
    try:
        fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ConfigError("file", None, f"cannot lock {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def save_route(path: Path, caller: str, called: str | None) -> None:
    """Set (or with ``called=None`` delete) a route in the file at ``path``, atomically, under :func:`locked`."""
    for what, value in (("caller", caller), ("called", called)):
        if value is not None and not re.fullmatch(r"[0-9A-Za-z_+*#.\-]{1,80}", value):
            raise ConfigError("route", value, f"{what} must be a dial string of digits/letters")
    with locked(path):
        text = path.read_text(encoding="utf-8")
        replace_file(path, edit_route(text, caller, called))


def replace_file(path: Path, text: str) -> None:
    """Write ``text`` over ``path`` atomically, keeping its permissions.

    Writes a temporary file beside it, fsyncs, then renames over the original,
    so a reader never sees half a file.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- editing token sections in place -----------------------------------------


def edit_token(text: str, name: str, values: Mapping[str, str] | None) -> str:
    """Return ``text`` with the ``[token NAME]`` section replaced, added or (``values=None``) removed.

    Comments and every other section stay as they are; a replaced section
    keeps its place, a new one is appended. Raises :class:`ConfigError` for a
    name that is not a token name, a key that is not a name, or a value that
    fails :func:`check_value` (the error names the key).
    """
    section = TOKEN_SECTION + name
    if not TOKEN_NAME.fullmatch(name):
        raise ConfigError(section, None, "a token name may hold only letters, digits, '_', '.' and '-'")
    for key, value in (values or {}).items():
        if not _KEY.fullmatch(key):
            raise ConfigError(section, None, "a key may hold only letters, digits and '_'")
        check_value(section, key, value)
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    wanted = section
    start = None
    end = len(lines)
    for index, line in enumerate(lines):
        match = SECTION_RE.match(line)
        if not match:
            continue
        if start is not None:
            end = index
            break
        if section_name(match.group(1)) == wanted:
            start = index
    new = [f"[{wanted}]\n", *(f"{key} = {value}\n" for key, value in (values or {}).items())]
    if start is None:
        return "".join(lines) if values is None else "".join([*lines, *new])
    kept_comments = [line for line in lines[start + 1 : end] if is_comment(line)]
    body = new if values is not None else []
    return "".join([*lines[:start], *body, *kept_comments, *lines[end:]])


def save_token(path: Path, name: str, values: Mapping[str, str] | None) -> None:
    """Write (or with ``values=None`` remove) the ``[token NAME]`` section of the file, atomically.

    Under :func:`locked`, like :func:`save_route`. The result must still
    load: a bad value raises :class:`ConfigError` and the file is left as it was.
    """
    if not TOKEN_NAME.fullmatch(name):
        raise ConfigError(TOKEN_SECTION + name, None, "a token name may hold only letters, digits, '_', '.' and '-'")
    with locked(path):
        text = path.read_text(encoding="utf-8")
        updated = edit_token(text, name, values)
        build_tokens(parse_text(updated))
        replace_file(path, updated)
