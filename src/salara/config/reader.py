"""Reading a config: files, then :class:`RawConfig`, then a validated :class:`Config`.

The files (:mod:`salara.config.source`), ``SALARA_<SECTION>_<KEY>``
environment overrides (:func:`apply_env`), validation into the schema with
errors naming section, key and file:line (:func:`build`), the checks that
span keys, and the readers of a file: :func:`load`, :func:`load_tokens` and
:func:`check` (every problem, for ``salara check``). Errors are
:class:`~salara.errors.ConfigError`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from salara.config.hosts import is_local_host, is_loopback_name, mask_url, normalise_host
from salara.config.pbxs import AMI_SECTION, Agi, Ami, pbx_name_problem
from salara.config.schema import SECRET_KEYS, SECTIONS, TOKEN_NAME, TOKEN_SECTION, Api, Config, Token, Url
from salara.config.source import (
    SECTION_RE,
    Origin,
    Problem,
    RawConfig,
    Report,
    is_comment,
    log,
    parse_text,
    read_file,
    section_name,
)
from salara.config.values import destination_problem
from salara.config.webhooks import RESERVED_NAME, WEBHOOK_NAME, WEBHOOK_SECTION, Webhook
from salara.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "SECTION_RE",
    "RawConfig",
    "apply_env",
    "build",
    "build_tokens",
    "build_webhooks",
    "check",
    "check_config",
    "check_destinations",
    "is_comment",
    "load",
    "load_tokens",
    "parse_text",
    "section_name",
    "validate",
    "webhook_name_problem",
]

ENV_PREFIX = "SALARA_"


def apply_env(raw: RawConfig, environ: Mapping[str, str]) -> None:
    """Set each ``SALARA_<SECTION>_<KEY>`` of ``environ`` over ``raw`` (the origin names the variable)."""
    named = sorted((s for s in raw.sections if s.startswith(AMI_SECTION)), key=len, reverse=True)
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        pbx = next((s for s in named if rest.startswith(s.replace(" ", "_").lower() + "_")), None)
        if pbx is not None and rest[len(pbx) + 1 :] not in Ami.model_fields and rest[4:] in Ami.model_fields:
            pbx = None  # SALARA_AMI_PING_INTERVAL is [ami] ping_interval, beside an [ami ping] too
        if pbx is not None:  # SALARA_AMI_<NAME>_<KEY>: that [ami NAME]'s
            key = rest[len(pbx) + 1 :]
            raw.sections[pbx][key] = value
            raw.origins[pbx, key] = Origin(None, None, f"environment {name}")
            continue
        for section in SECTIONS:
            if rest.startswith(section + "_"):
                key = rest[len(section) + 1 :]
                raw.sections.setdefault(section, {})[key] = value
                raw.origins[section, key] = Origin(None, None, f"environment {name}")
                break


def check_destinations(raw: RawConfig, report: Report) -> None:
    """Drop from ``raw`` the ``[general] default`` and ``[route]`` entries that are no destination.

    Each goes to ``report`` as a lenient problem naming its key and
    file:line (:func:`~salara.config.values.destination_problem` says why):
    a load logs it and goes on without the entry, ``salara check`` counts it.
    """
    general = raw.sections.get("general", {})
    default = general.get("default", "")
    reason = destination_problem(default) if default else None
    if reason is not None:
        report.lenient(Problem("general", "default", f"{reason} (got {default!r})", _where(raw, "general", "default")))
        del general["default"]
    for caller, called in list(raw.routes.items()):
        reason = destination_problem(called)
        if reason is not None:
            report.lenient(Problem("route", caller, f"{reason} (got {called!r})", _where(raw, "route", caller)))
            del raw.routes[caller]


def _where(raw: RawConfig, section: str, key: str | None) -> Origin | None:
    """Where ``key`` of ``section`` was set; without a key, where the section starts."""
    if key is not None and (section, key) in raw.origins:
        return raw.origins[section, key]
    headers = raw.headers.get(section)
    return headers[0] if headers else None


def _section(
    raw: RawConfig, section: str, model: type[BaseModel], report: Report, secret: frozenset[str], noun: str
) -> BaseModel | None:
    """``model`` validated from ``raw``'s ``section``: unknown keys lenient, each bad value an error."""
    given = raw.sections.get(section, {})
    for key in [key for key in given if key not in model.model_fields]:
        report.lenient(Problem(section, key, f"is not a {noun} setting", _where(raw, section, key)))
    try:
        return model.model_validate({key: value for key, value in given.items() if key in model.model_fields})
    except ValidationError as exc:
        for error in exc.errors():
            bad_key = str(error["loc"][0]) if error["loc"] else None
            shown = "***" if bad_key in secret else given.get(bad_key or "", "")
            message = error["msg"].removeprefix("Value error, ")
            report.error(Problem(section, bad_key, f"{message} (got {shown!r})", _where(raw, section, bad_key)))
        return None


def build(raw: RawConfig, path: Path | None = None) -> Config:
    """Validate a :class:`RawConfig` into a :class:`Config`.

    Raises :class:`ConfigError` for the first invalid value (its message ends
    with the value's file:line); unknown sections and keys are logged and ignored.
    """
    config = validate(raw, path, Report())
    assert config is not None  # a report that does not collect raises instead
    return config


def validate(raw: RawConfig, path: Path | None, report: Report) -> Config | None:
    """:func:`build` with problems sent to ``report``: ``None`` when one was an error (a collecting report)."""
    check_destinations(raw, report)
    values: dict[str, Any] = {}
    for name, model in SECTIONS.items():
        secret = frozenset(key for section, key in SECRET_KEYS if section == name)
        values[name] = _section(raw, name, model, report, secret, "salara")
    tokens = build_tokens(raw, report=report)
    webhooks = build_webhooks(raw, report=report)
    pbxs = build_pbxs(raw, report)
    for section in [name for name in raw.sections if name not in SECTIONS and name != "route"]:
        if not section.startswith((TOKEN_SECTION, WEBHOOK_SECTION, AMI_SECTION)):
            report.lenient(Problem(section, None, "is not a section salara uses", _where(raw, section, None)))
    if any(value is None for value in values.values()):
        return None
    try:
        _check_api(values["api"])
        _check_webhook_targets(values["url"])
        _check_pbxs(values["agi"], values["ami"], pbxs)
    except ConfigError as exc:
        report.error(Problem(exc.section, exc.key, exc.reason, _where(raw, exc.section, exc.key)))
        return None
    return Config(**values, routes=dict(raw.routes), path=path, tokens=tokens, webhooks=webhooks, pbxs=pbxs)


def build_pbxs(raw: RawConfig, report: Report) -> dict[str, Ami]:
    """The ``[ami NAME]`` sections of ``raw`` by name: each PBX beyond ``[ami]`` (``default``)."""
    pbxs: dict[str, Ami] = {}
    for section in raw.sections:
        if not section.startswith(AMI_SECTION):
            continue
        name = section[len(AMI_SECTION) :]
        problem = pbx_name_problem(name)
        if problem:
            report.error(Problem(section, None, problem, _where(raw, section, None)))
            continue
        pbx = _section(raw, section, Ami, report, frozenset({"secret"}), "PBX")
        if isinstance(pbx, Ami):
            pbxs[name] = pbx
    return pbxs


def build_tokens(raw: RawConfig, *, report: Report | None = None) -> dict[str, Token]:
    """The ``[token NAME]`` sections of ``raw`` as tokens by name.

    Raises :class:`ConfigError` for a bad name or value, and for a hash used
    twice (unless ``report`` collects). An unknown key is lenient.
    """
    report = report or Report()
    tokens: dict[str, Token] = {}
    hashes: dict[str, str] = {}
    for section in raw.sections:
        if not section.startswith(TOKEN_SECTION):
            continue
        name = section[len(TOKEN_SECTION) :]
        if not TOKEN_NAME.fullmatch(name):
            reason = "a token name may hold only letters, digits, '_', '.' and '-'"
            report.error(Problem(section, None, reason, _where(raw, section, None)))
            continue
        token = _section(raw, section, Token, report, frozenset({"hash"}), "token")
        if not isinstance(token, Token):
            continue
        if token.hash in hashes:
            reason = f"the same token as [{TOKEN_SECTION}{hashes[token.hash]}]"
            report.error(Problem(section, "hash", reason, _where(raw, section, "hash")))
            continue
        hashes[token.hash] = name
        tokens[name] = token
    return tokens


def build_webhooks(raw: RawConfig, *, report: Report | None = None) -> dict[str, Webhook]:
    """The ``[webhook NAME]`` sections of ``raw`` as endpoints by name.

    Raises :class:`ConfigError` for a bad or reserved name or a bad value
    (unless ``report`` collects). An unknown key is lenient.
    """
    report = report or Report()
    webhooks: dict[str, Webhook] = {}
    for section in raw.sections:
        if not section.startswith(WEBHOOK_SECTION):
            continue
        name = section[len(WEBHOOK_SECTION) :]
        problem = webhook_name_problem(name)
        if problem:
            report.error(Problem(section, None, problem, _where(raw, section, None)))
            continue
        webhook = _section(raw, section, Webhook, report, frozenset({"secret"}), "webhook")
        if isinstance(webhook, Webhook):
            webhooks[name] = webhook
    return webhooks


def webhook_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a ``[webhook NAME]``, or None."""
    if not WEBHOOK_NAME.fullmatch(name):
        return "a webhook name may hold only letters, digits, '_', '.' and '-' (at most 64)"
    if name.lower() == RESERVED_NAME:
        return f"{RESERVED_NAME!r} is [url] dest_url_event's name; choose another"
    return None


# -- checks that span keys, after every section validated ------------------


def check_config(config: Config) -> None:
    """The checks across keys of a whole config (one assembled by a reload); raises :class:`ConfigError`."""
    _check_api(config.api)
    _check_webhook_targets(config.url)
    _check_pbxs(config.agi, config.ami, config.pbxs)


def _check_pbxs(agi: Agi, default: Ami, pbxs: Mapping[str, Ami]) -> None:
    """A context is served by one PBX; FastAGI beyond loopback only from the addresses ``[agi] allow`` names."""
    served: dict[str, str] = {context: "ami" for context in default.contexts}
    for name, pbx in pbxs.items():
        for context in pbx.contexts:
            if context in served:
                raise ConfigError(f"ami {name}", "contexts", f"{context!r} is served by [{served[context]}] already")
            served[context] = f"ami {name}"
    if not agi.allow and not is_loopback_name(agi.listen.host):
        raise ConfigError(
            "agi",
            "listen",
            f"{agi.listen} is reachable beyond this machine: name the PBXs' addresses in [agi] allow",
        )


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
    """Read ``path`` and the files it includes (None: defaults only), apply ``SALARA_*`` overrides, validate.

    Raises :class:`ConfigError` for a file that cannot be read, a bad line,
    a missing ``#include``, an include loop, ``#exec`` or any invalid value.
    Unknown sections and keys are logged (file:line) and ignored.
    """
    raw = RawConfig()
    file_path = Path(path) if path is not None else None
    if file_path is not None:
        raw = read_file(file_path)
        for read in raw.files:
            _warn_if_readable(read)
    apply_env(raw, os.environ if environ is None else environ)
    return build(raw, file_path)


def load_tokens(path: Path) -> dict[str, Token]:
    """Only the ``[token NAME]`` sections of the file at ``path`` and its includes; raises ConfigError."""
    return build_tokens(read_file(path))


def check(path: Path, environ: Mapping[str, str] | None = None) -> list[Problem]:
    """Every problem of the file at ``path``, its includes and the ``SALARA_*`` overrides; ``[]`` when clean.

    What :func:`load` would refuse, and what it would only log (an unknown
    section or key), each with its file:line, in the order of the files
    read and their lines (the environment last). Raises nothing.
    """
    report = Report(collect=True)
    raw = read_file(path, report=report)
    apply_env(raw, os.environ if environ is None else environ)
    validate(raw, path, report)

    def order(problem: Problem) -> tuple[int, int]:
        origin = problem.origin
        if origin is None or origin.file not in raw.files:
            return (len(raw.files) + (origin is not None), 0)
        return (raw.files.index(origin.file), origin.line or 0)

    return sorted(report.problems, key=order)


def _warn_if_readable(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & 0o004:
        log.warning("config: %s is readable by every user and may hold secrets; chmod 600 it", path)
