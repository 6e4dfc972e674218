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
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from salara.config.reader import build_tokens, build_webhooks, webhook_name_problem
from salara.config.schema import TOKEN_NAME, TOKEN_SECTION
from salara.config.source import (
    MAX_FILES,
    SECTION_RE,
    RawConfig,
    is_comment,
    read_file,
    section_name,
    strip_comment,
)
from salara.config.values import destination_problem
from salara.config.webhooks import WEBHOOK_SECTION
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


def edit_route(text: str, caller: str, called: str | None, *, opening: str | None = None) -> str:
    """Return ``text`` with the ``[route]`` entry of ``caller`` set or removed.

    Comments, order and every other line stay as they are. ``called=None``
    deletes the entry (its last line, the one a load keeps). A missing
    ``[route]`` section is appended. ``opening`` is the section the text
    starts in (a file included inside ``[route]`` has no header of its own).
    Raises :class:`ConfigError` when ``caller`` or ``called`` fails :func:`check_value`.
    """
    check_value("route", None, caller, "the caller")
    if called is not None:
        check_value("route", caller, called, "the destination")
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    section = opening
    start = end = 0 if opening == "route" else None
    found = None
    for index, line in enumerate(lines):
        match = SECTION_RE.match(line)
        if match:
            section = section_name(match.group(1))
            if section == "route" and start is None:
                start = end = index + 1
            continue
        if section != "route" or is_comment(line):
            continue
        end = index + 1
        if strip_comment(line).partition(":")[0].strip() == caller:
            found = index
    new_line = f"{caller}:{called}\n" if called is not None else None
    if start is None:
        return "".join(lines) if new_line is None else "".join(lines) + f"[route]\n{new_line}"
    assert end is not None
    if found is not None and new_line is None:
        del lines[found]
    elif found is not None and new_line is not None:
        lines[found] = new_line
    elif new_line is not None:
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
    """Set (or with ``called=None`` delete) a route of the config at ``path``, atomically, under :func:`locked`.

    The change goes to the file that holds the entry (it may be one that
    ``path`` includes); a new entry to ``[general] edit_file`` when set (created
    if missing), else to the file of the last route, else of the ``[route]``
    header, else to ``path`` itself. A deleted entry is deleted
    from every file that sets it. Raises :class:`ConfigError` for a caller
    that is not a dial string, a destination the CRM's answer could not name
    either (:func:`~salara.config.values.destination_problem`), or when the
    files cannot be read.
    """
    if not re.fullmatch(r"[0-9A-Za-z_+*#.\-]{1,80}", caller):
        raise ConfigError("route", None, "the caller must be a dial string of digits/letters")
    reason = destination_problem(called) if called is not None else None
    if reason is not None:
        raise ConfigError("route", caller, f"the destination {reason} (got {called!r})")
    with locked(path):
        raw = read_file(path)
        for _ in range(MAX_FILES):
            target = _route_file(raw, caller, path, deleting=called is None)
            if target is None:
                return
            text = target.read_text(encoding="utf-8")
            updated = edit_route(text, caller, called, opening=raw.openings.get(target))
            if updated == text:
                return
            _rewrite(path, target, updated)
            if called is not None:
                return
            raw = read_file(path)


def edit_file(raw: RawConfig, main: Path) -> Path | None:
    """The file ``[general] edit_file`` of ``raw`` names (relative: to ``main``'s directory), or None."""
    name = raw.sections.get("general", {}).get("edit_file", "").strip()
    if not name:
        return None
    return main.parent / name


def _new_entries_file(raw: RawConfig, main: Path) -> Path | None:
    """Where a new route or token goes by ``[general] edit_file``: created if missing; None without the key.

    Raises :class:`ConfigError` when ``main`` does not include that file
    (what is written there would not be read).
    """
    target = edit_file(raw, main)
    if target is None:
        return None
    if target not in raw.files and target not in read_file(main, texts={target: ""}).files:
        reason = f'{target} is not included by {main}: add #tryinclude "{target}" to it'
        raise ConfigError("general", "edit_file", reason)
    if not target.exists():
        _create_like(target, main)
    return target


def _create_like(path: Path, model: Path) -> None:
    """Create ``path`` empty, with ``model``'s permissions and, when allowed, its owner and group."""
    info = model.stat()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, info.st_mode & 0o7777)
    except OSError as exc:
        raise ConfigError("general", "edit_file", f"cannot create {path}: {exc.strerror}") from None
    try:
        os.write(fd, b"; written by salara route set / token create (see [general] edit_file)\n")
        with contextlib.suppress(OSError):
            os.fchown(fd, info.st_uid, info.st_gid)
        os.fchmod(fd, info.st_mode & 0o7777)
    finally:
        os.close(fd)


def _route_file(raw: RawConfig, caller: str, main: Path, *, deleting: bool) -> Path | None:
    origin = raw.origins.get(("route", caller))
    if origin is None and deleting:
        return None
    if origin is None:
        target = _new_entries_file(raw, main)
        if target is not None:
            return target
    if origin is None and raw.routes:
        origin = raw.origins.get(("route", next(reversed(raw.routes))))
    if origin is None and raw.headers.get("route"):
        origin = raw.headers["route"][0]
    return origin.file if origin is not None and origin.file is not None else main


def _rewrite(main: Path, target: Path, text: str) -> None:
    """Replace ``target``; when it is a file ``main`` includes, touch ``main`` too.

    Whatever watches only the main file for changes (the running service's
    token reloader) then sees an edit made in an included file.
    """
    replace_file(target, text)
    if target != main:
        os.utime(main)


def replace_file(path: Path, text: str) -> None:
    """Write ``text`` over ``path`` atomically, keeping its permissions (and its owner, where allowed).

    Writes a temporary file beside it, fsyncs, then renames over the original,
    so a reader never sees half a file.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        info = path.stat()
        with contextlib.suppress(OSError):  # root editing the service's file: it stays the service's
            os.chown(tmp, info.st_uid, info.st_gid)
        os.chmod(tmp, info.st_mode & 0o7777)
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
    return edit_section(text, section, values)


def edit_section(text: str, section: str, values: Mapping[str, str] | None) -> str:
    """Return ``text`` with ``[section]`` replaced, added or (``values=None``) removed (as :func:`edit_token`)."""
    for key, value in (values or {}).items():
        if not _KEY.fullmatch(key):
            raise ConfigError(section, None, "a key may hold only letters, digits and '_'")
        check_value(section, key, value)
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    blocks: list[tuple[int, int]] = []
    start = None
    for index, line in enumerate(lines):
        match = SECTION_RE.match(line)
        if not match:
            continue
        if start is not None:
            blocks.append((start, index))
            start = None
        if section_name(match.group(1)) == section:
            start = index
    if start is not None:
        blocks.append((start, len(lines)))
    new = [f"[{section}]\n", *(f"{key} = {value}\n" for key, value in (values or {}).items())]
    if not blocks:
        return "".join(lines) if values is None else "".join([*lines, *new])
    out: list[str] = []
    done = 0
    for number, (start, end) in enumerate(blocks):
        out += lines[done:start]
        if number == 0 and values is not None:
            out += new
        out += [line for line in lines[start + 1 : end] if is_comment(line)]
        done = end
    return "".join(out + lines[done:])


def save_token(path: Path, name: str, values: Mapping[str, str] | None) -> None:
    """Write (or with ``values=None`` remove) the ``[token NAME]`` section of the config at ``path``, atomically.

    Under :func:`locked`, like :func:`save_route`. The section is replaced in
    the file that holds it (one that ``path`` includes, maybe) and removed
    from any other file that also writes it; a new section goes to ``[general]
    edit_file`` when set (created if missing), else to ``path``.
    The result must still load, with every file it includes: a bad value or a
    hash another token has raises :class:`ConfigError` and no file is changed.
    """
    section = TOKEN_SECTION + name
    if not TOKEN_NAME.fullmatch(name):
        raise ConfigError(section, None, "a token name may hold only letters, digits, '_', '.' and '-'")
    save_section(path, section, values, build_tokens)


def save_webhook(path: Path, name: str, values: Mapping[str, str] | None) -> None:
    """Write (or with ``values=None`` remove) the ``[webhook NAME]`` section at ``path``, as :func:`save_token`.

    Raises :class:`ConfigError` for a bad or reserved name or a bad value (no file is changed).
    """
    section = WEBHOOK_SECTION + name
    problem = webhook_name_problem(name)
    if problem:
        raise ConfigError(section, None, problem)
    save_section(path, section, values, build_webhooks)


def save_section(
    path: Path, section: str, values: Mapping[str, str] | None, check: Callable[[RawConfig], object]
) -> None:
    """Write ``[section]`` of the config at ``path`` atomically, under :func:`locked`, if ``check`` passes.

    The section is replaced in the file that holds it and removed from any
    other file that also writes it; a new one goes to ``[general] edit_file``
    when set, else to ``path``. ``check`` (a builder of the sections, which
    raises :class:`ConfigError`) sees the files as they would be.
    """
    with locked(path):
        raw = read_file(path)
        holders = list(dict.fromkeys(o.file for o in raw.headers.get(section, []) if o.file is not None))
        holders = holders or [_new_entries_file(raw, path) or path]
        texts = {holder: holder.read_text(encoding="utf-8") for holder in holders}
        updated = {
            holder: edit_section(text, section, values if index == 0 else None)
            for index, (holder, text) in enumerate(texts.items())
        }
        check(read_file(path, texts=updated))
        for holder, text in updated.items():
            if text != texts[holder]:
                _rewrite(path, holder, text)
