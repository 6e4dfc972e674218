"""The config file format, and the tree of files ``#include`` makes of it.

Asterisk's syntax, as the old module read its ``salara.conf`` through
Asterisk: ``[section]`` headers, ``key = value`` (or ``key => value``) lines,
``;`` comments anywhere (``\\;`` for a literal one), a UTF-8 BOM allowed.
Directives as Asterisk reads them: ``#include FILE`` and ``#tryinclude FILE``
(the name bare, in ``"..."`` or in ``<...>``; globs and ``{a,b}`` braces as
Asterisk's ``glob()`` expands them; a relative name against the directory of
the main file, where Asterisk looks for its own). An included file goes on in
the section its ``#include`` line is in; after it the including file goes on
in its own. ``#exec`` is refused; any other ``#`` line is a comment.

:func:`parse_text` reads one text; :func:`read_file` a file and every file it
includes. Problems go to a :class:`Report`: raised as
:class:`~salara.errors.ConfigError` at once, or collected (``salara check``).
"""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from salara.config.schema import TOKEN_SECTION
from salara.errors import ConfigError

log = logging.getLogger("salara.config")

SECTION_RE = re.compile(r"^\s*\[([^\]]+)\]\s*$")
MAX_FILES = 256
"""Files one tree may read (each read of a file included twice counts)."""
_GLOB_MAGIC = re.compile(r"[*?\[]")
_DIRECTIVE = re.compile(r"#(\S*)(.*)")
"""A directive's name runs from the ``#`` to the first blank, as Asterisk reads it."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a setting comes from: ``file`` and ``line``; without a file, a ``label`` (an environment variable)."""

    file: Path | None
    line: int | None = None
    label: str = ""

    def __str__(self) -> str:
        if self.file is None:
            return self.label or (f"line {self.line}" if self.line else "?")
        return f"{self.file}:{self.line}" if self.line else str(self.file)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a config: its section and key (if any), why, and where."""

    section: str
    key: str | None
    reason: str
    origin: Origin | None = None

    def __str__(self) -> str:
        """``FILE:LINE: [section] key: reason``, as ``salara check`` lists it."""
        where = f"{self.origin}: " if self.origin else ""
        if self.section == "file":
            return f"{where}{self.reason}"
        return f"{where}{ConfigError(self.section, self.key, self.reason)}"

    def error(self) -> ConfigError:
        """The problem as the :class:`ConfigError` that stops a load, its place in the message."""
        origin = self.origin
        reason = self.reason
        if origin is not None and origin.line and self.key is None:
            place = f" of {origin.file}" if origin.file is not None else ""
            reason = f"line {origin.line}{place}: {reason}"
        elif origin is not None and (origin.file is not None or origin.label):
            reason = f"{reason} ({origin})"
        return ConfigError(self.section, self.key, reason)


class Report:
    """Where problems go. ``collect=False`` (loading): an error raises, a lenient problem is logged and ignored.

    ``collect=True`` (``salara check``): every problem, lenient or not, is
    kept in :attr:`problems` and reading goes on.
    """

    def __init__(self, *, collect: bool = False) -> None:
        self.collect = collect
        self.problems: list[Problem] = []

    def error(self, problem: Problem) -> None:
        """A problem that stops a load; raises :class:`ConfigError` unless collecting."""
        if not self.collect:
            raise problem.error()
        self.problems.append(problem)

    def lenient(self, problem: Problem) -> None:
        """A problem a load survives (an unknown key, say): logged as a warning, or collected."""
        if self.collect:
            self.problems.append(problem)
        else:
            log.warning("config: %s; ignored", problem)


@dataclass(slots=True)
class RawConfig:
    """A parsed file: ``{section: {key: value}}`` plus the ``[route]`` pairs in order.

    ``origins`` says where each ``(section, key)`` was last set (a route's key
    is its caller), ``headers`` where each ``[section]`` header is, ``files``
    every file read (main first), ``openings`` the section each file starts
    in (an ``#include`` inside a section), ``watched`` the files and
    directories whose change can change what is read.
    """

    sections: dict[str, dict[str, str]] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)
    origins: dict[tuple[str, str], Origin] = field(default_factory=dict)
    headers: dict[str, list[Origin]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    openings: dict[Path, str | None] = field(default_factory=dict)
    watched: list[Path] = field(default_factory=list)


def is_comment(line: str) -> bool:
    """Whether ``line`` is blank or a whole-line ``;`` or ``#`` comment (a directive counts as one)."""
    stripped = line.strip()
    return not stripped or stripped[0] in ";#"


def section_name(header: str) -> str:
    """The name of a ``[header]``: lower case, but a token's own name keeps its case."""
    header = header.strip()
    if header.lower().startswith(TOKEN_SECTION):
        return TOKEN_SECTION + header[len(TOKEN_SECTION) :].strip()
    return header.lower()


def strip_comment(line: str) -> str:
    """The line without its comment: Asterisk's rule, ``;`` starts one unless written ``\\;``."""
    if ";" not in line:
        return line
    out = []
    escaped = False
    for char in line:
        if escaped:
            out.append(char if char == ";" else "\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ";":
            break
        else:
            out.append(char)
    if escaped:
        out.append("\\")
    return "".join(out)


def parse_text(text: str) -> RawConfig:
    """Split one text in the old module's format into sections; raises ConfigError on a bad line.

    ``#include`` lines are not followed here (a text alone has no directory:
    :func:`read_file` follows them); ``#exec`` raises. Errors name the line
    but never repeat its text (it may hold a secret).
    """
    raw = RawConfig()
    _Reader(raw, Report(), None, {}).feed(text, None, None, ())
    return raw


def read_file(path: Path, *, report: Report | None = None, texts: Mapping[Path, str] | None = None) -> RawConfig:
    """Read the file at ``path`` and every file it includes into one :class:`RawConfig`.

    ``texts`` stands in for the content of some files (an edit checked before
    it is written), keyed by the paths :attr:`RawConfig.files` names. Raises
    :class:`ConfigError` (a file that cannot be read, a bad line, an
    ``#include`` of a missing file, a loop, ``#exec``) unless ``report``
    collects.
    """
    raw = RawConfig()
    reader = _Reader(raw, report or Report(), path.parent, texts or {})
    reader.read(path, None, (), None)
    return raw


def stamp(paths: list[Path]) -> tuple[tuple[int, int, int] | None, ...]:
    """What changes when any of ``paths`` (files or directories) changes: their inode, size and mtime."""
    out: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            out.append(None)
            continue
        out.append((info.st_ino, info.st_size, info.st_mtime_ns))
    return tuple(out)


def expand_braces(pattern: str) -> list[str]:
    """``{a,b}`` alternatives expanded as ``glob(3)`` with ``GLOB_BRACE`` does (nested too); others kept."""
    start = pattern.find("{")
    while start != -1:
        depth = 0
        parts: list[str] = []
        begin = start + 1
        for index in range(start, len(pattern)):
            char = pattern[index]
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    parts.append(pattern[begin:index])
                    head, tail = pattern[:start], pattern[index + 1 :]
                    return [out for part in parts for out in expand_braces(head + part + tail)]
            elif char == "," and depth == 1:
                parts.append(pattern[begin:index])
                begin = index + 1
        start = pattern.find("{", start + 1)
    return [pattern]


class _Reader:
    def __init__(self, raw: RawConfig, report: Report, root: Path | None, texts: Mapping[Path, str]) -> None:
        self.raw = raw
        self.report = report
        self.root = root
        self.texts = texts
        self.reads = 0

    def read(self, path: Path, section: str | None, stack: tuple[Path, ...], at: Origin | None) -> None:
        self.reads += 1
        if self.reads > MAX_FILES:
            self.report.error(Problem("file", None, f"more than {MAX_FILES} files read: includes too deep", at))
            return
        text = self.texts.get(path)
        if text is None:
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError as exc:
                self.report.error(Problem("file", None, f"cannot read {path}: {exc.strerror}", at))
                return
        if path not in self.raw.files:
            self.raw.files.append(path)
            self.raw.openings[path] = section
            self.raw.watched.append(path)
        self.feed(text, path, section, (*stack, path.resolve()))

    def feed(self, text: str, path: Path | None, section: str | None, stack: tuple[Path, ...]) -> None:
        raw = self.raw
        for number, full_line in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
            line = strip_comment(full_line).strip()
            if not line:
                continue
            origin = Origin(path, number)
            if line.startswith("#"):
                self.directive(line, origin, section, stack)
                continue
            match = SECTION_RE.match(line)
            if match:
                section = section_name(match.group(1))
                raw.sections.setdefault(section, {})
                raw.headers.setdefault(section, []).append(origin)
                continue
            if section is None:
                self.report.error(Problem("?", None, "a setting before any [section]", origin))
            elif section == "route":
                caller, sep, called = line.partition(":")
                if not sep or not caller.strip() or not called.strip():
                    self.report.error(Problem("route", None, "expected CALLER:CALLED", origin))
                    continue
                raw.routes[caller.strip()] = called.strip()
                raw.origins["route", caller.strip()] = origin
            else:
                key, sep, value = line.partition("=")
                if not sep or not key.strip():
                    self.report.error(Problem(section, None, "expected key=value", origin))
                    continue
                raw.sections.setdefault(section, {})[key.strip().lower()] = value.removeprefix(">").strip()
                raw.origins[section, key.strip().lower()] = origin

    def directive(self, line: str, origin: Origin, section: str | None, stack: tuple[Path, ...]) -> None:
        match = _DIRECTIVE.match(line)
        assert match is not None
        kind, argument = match.group(1).lower(), match.group(2).strip()
        if kind == "exec":
            reason = "#exec is not supported: salara runs no command to read its config"
            self.report.error(Problem("file", None, reason, origin))
            return
        if kind not in ("include", "tryinclude"):
            return  # a comment, as it always was to salara
        if not argument:
            self.report.error(Problem("file", None, f"#{kind} needs a file name", origin))
            return
        if len(argument) > 1 and (argument[0], argument[-1]) in (('"', '"'), ("<", ">")):
            argument = argument[1:-1]
        if self.root is None:
            return  # one text alone: nothing to resolve against
        matches = self.expand(self.root / argument)
        if not matches and kind == "include":
            self.report.error(Problem("file", None, f'#include "{argument}": no such file', origin))
        for target in matches:
            if target.resolve() in stack:
                reason = f"#{kind} {target} is a loop: {target} includes {origin.file}"
                self.report.error(Problem("file", None, reason, origin))
                continue
            self.read(target, section, stack, origin)

    def expand(self, pattern: Path) -> list[Path]:
        """The regular files ``pattern`` names, as Asterisk's ``glob()`` (``GLOB_NOMAGIC | GLOB_BRACE``) finds them."""
        found: list[Path] = []
        for alternative in expand_braces(str(pattern)):
            directory = Path(alternative).parent
            while _GLOB_MAGIC.search(str(directory)) and directory != directory.parent:
                directory = directory.parent
            if directory not in self.raw.watched:
                self.raw.watched.append(directory)
            names = sorted(glob.glob(alternative)) if _GLOB_MAGIC.search(alternative) else [alternative]
            for name in names:
                candidate = Path(name)
                if candidate in self.texts or candidate.is_file():
                    found.append(candidate)
                elif candidate.exists():
                    log.warning("config: %s is not a regular file; not included", candidate)
        return found
