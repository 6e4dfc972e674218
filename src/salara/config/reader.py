"""Reading a config: file text, then :class:`RawConfig`, then a validated :class:`Config`.

The file format (:func:`parse_text`), ``SALARA_<SECTION>_<KEY>`` environment
overrides, validation into the schema with errors naming section and key
(:func:`build`), the checks that span keys, and the two readers of a file,
:func:`load` and :func:`load_tokens`. Errors are
:class:`~salara.errors.ConfigError`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from salara.config.hosts import is_local_host, mask_url, normalise_host
from salara.config.schema import SECRET_KEYS, SECTIONS, TOKEN_NAME, TOKEN_SECTION, Api, Config, Token, Url
from salara.errors import ConfigError

log = logging.getLogger("salara.config")
"""The package's logger: its lines read ``salara.config: ...`` whichever module writes them."""

ENV_PREFIX = "SALARA_"


# -- the file format -------------------------------------------------------

SECTION_RE = re.compile(r"^\s*\[([^\]]+)\]\s*$")


@dataclass(slots=True)
class RawConfig:
    """A parsed file: ``{section: {key: value}}`` plus the ``[route]`` pairs in order."""

    sections: dict[str, dict[str, str]] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)


def is_comment(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped[0] in ";#"


def section_name(header: str) -> str:
    """The name of a ``[header]``: lower case, but a token's own name keeps its case."""
    header = header.strip()
    if header.lower().startswith(TOKEN_SECTION):
        return TOKEN_SECTION + header[len(TOKEN_SECTION) :].strip()
    return header.lower()


def _strip_comment(line: str) -> str:
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
    """Split the old module's format into sections; raises ConfigError on a bad line.

    Asterisk's config syntax, as the old module read it through Asterisk:
    ``;`` comments anywhere (``\\;`` for a literal one), ``key = value`` or
    ``key => value``, whitespace around both ignored, a UTF-8 BOM allowed.
    Errors name the line but never repeat its text (it may hold a secret).
    """
    raw = RawConfig()
    section: str | None = None
    for number, full_line in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        if full_line.lstrip().startswith("#"):
            continue  # Asterisk's #include/#exec directives are not followed
        line = _strip_comment(full_line).strip()
        if not line:
            continue
        match = SECTION_RE.match(line)
        if match:
            section = section_name(match.group(1))
            raw.sections.setdefault(section, {})
            continue
        if section is None:
            raise ConfigError("?", None, f"line {number}: a setting before any [section]")
        if section == "route":
            caller, sep, called = line.partition(":")
            if not sep or not caller.strip() or not called.strip():
                raise ConfigError("route", None, f"line {number}: expected CALLER:CALLED")
            raw.routes[caller.strip()] = called.strip()
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigError(section, None, f"line {number}: expected key=value")
        raw.sections[section][key.strip().lower()] = value.removeprefix(">").strip()
    return raw


def _apply_env(raw: RawConfig, environ: Mapping[str, str]) -> None:
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        for section in SECTIONS:
            if rest.startswith(section + "_"):
                raw.sections.setdefault(section, {})[rest[len(section) + 1 :]] = value
                break


def build(raw: RawConfig, path: Path | None = None) -> Config:
    """Validate a :class:`RawConfig` into a :class:`Config`; raises ConfigError."""
    values: dict[str, Any] = {}
    for name, model in SECTIONS.items():
        given = raw.sections.get(name, {})
        unknown = sorted(set(given) - set(model.model_fields))
        for key in unknown:
            log.warning("config: [%s] %s is not a salara setting; ignored", name, key)
        try:
            values[name] = model.model_validate(given)
        except ValidationError as exc:
            error = exc.errors()[0]
            bad_key = str(error["loc"][0]) if error["loc"] else None
            shown = "***" if (name, bad_key) in SECRET_KEYS else given.get(bad_key or "", "")
            raise ConfigError(name, bad_key, f"{error['msg']} (got {shown!r})") from None
    tokens = build_tokens(raw)
    for section in sorted(set(raw.sections) - set(SECTIONS) - {"route"}):
        if not section.startswith(TOKEN_SECTION):
            log.warning("config: section [%s] is not used by salara; ignored", section)
    _check_api(values["api"])
    _check_webhook_targets(values["url"])
    return Config(**values, routes=dict(raw.routes), path=path, tokens=tokens)


def build_tokens(raw: RawConfig) -> dict[str, Token]:
    """The ``[token NAME]`` sections of ``raw`` as tokens by name; raises ConfigError (also for a hash used twice)."""
    tokens: dict[str, Token] = {}
    hashes: dict[str, str] = {}
    for section, given in raw.sections.items():
        if not section.startswith(TOKEN_SECTION):
            continue
        name = section[len(TOKEN_SECTION) :]
        if not TOKEN_NAME.fullmatch(name):
            raise ConfigError(section, None, "a token name may hold only letters, digits, '_', '.' and '-'")
        for key in sorted(set(given) - set(Token.model_fields)):
            log.warning("config: [%s] %s is not a token setting; ignored", section, key)
        try:
            token = Token.model_validate(given)
        except ValidationError as exc:
            error = exc.errors()[0]
            bad_key = str(error["loc"][0]) if error["loc"] else None
            shown = "***" if bad_key == "hash" else given.get(bad_key or "", "")
            message = error["msg"].removeprefix("Value error, ")
            raise ConfigError(section, bad_key, f"{message} (got {shown!r})") from None
        if token.hash in hashes:
            raise ConfigError(section, "hash", f"the same token as [{TOKEN_SECTION}{hashes[token.hash]}]")
        hashes[token.hash] = name
        tokens[name] = token
    return tokens


# -- checks that span keys, after every section validated ------------------


def _check_api(api: Api) -> None:
    if bool(api.tls_cert) != bool(api.tls_key):
        missing = "tls_key" if api.tls_cert else "tls_cert"
        raise ConfigError("api", missing, "HTTPS needs both tls_cert and tls_key")


def _check_webhook_targets(url: Url) -> None:
    """``dest_url`` and ``dest_url_event`` may not point at salara's own API (a loop)."""
    own = url.rest_server
    for key in ("dest_url", "dest_url_event"):
        target = getattr(url, key)
        if not target:
            continue
        try:
            parts = urlsplit(target)
            port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
        except ValueError:
            raise ConfigError("url", key, f"{mask_url(target)!r} is not a URL") from None
        host = normalise_host(parts.hostname or "")
        if parts.scheme.lower() not in ("http", "https") or not host:
            raise ConfigError("url", key, f"{mask_url(target)!r} is not an http(s) URL")
        own_host = normalise_host(own.host)
        same_host = host == own_host or (is_local_host(host) and is_local_host(own_host))
        if same_host and port == own.port:
            raise ConfigError("url", key, f"points at salara's own API ([url] rest_server={own})")


# -- reading a file ---------------------------------------------------------


def load(path: str | Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (None: defaults only), apply ``SALARA_*`` overrides, validate.

    Raises :class:`ConfigError` for a missing file or any invalid value.
    """
    raw = RawConfig()
    file_path = Path(path) if path is not None else None
    if file_path is not None:
        try:
            text = file_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise ConfigError("file", None, f"cannot read {file_path}: {exc.strerror}") from None
        raw = parse_text(text)
        _warn_if_readable(file_path)
    _apply_env(raw, os.environ if environ is None else environ)
    return build(raw, file_path)


def load_tokens(path: Path) -> dict[str, Token]:
    """Only the ``[token NAME]`` sections of the file at ``path``; raises ConfigError."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError("file", None, f"cannot read {path}: {exc.strerror}") from None
    return build_tokens(parse_text(text))


def _warn_if_readable(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & 0o004:
        log.warning("config: %s is readable by every user and may hold secrets; chmod 600 it", path)
