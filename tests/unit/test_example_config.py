"""The example config lists every key salara reads, and loads as it is."""

from __future__ import annotations

import re
from pathlib import Path

from salara.config import load
from salara.config.schema import SECTIONS, Token
from salara.config.webhooks import Webhook

EXAMPLE = Path(__file__).resolve().parents[2] / "salara.conf.example"


def keys_by_section(text: str) -> dict[str, set[str]]:
    """Keys set or shown commented out, by section (a commented ``;[webhook NAME]`` counts as ``webhook``)."""
    found: dict[str, set[str]] = {}
    section = None
    for line in text.splitlines():
        if match := re.match(r"^;?\[([^\]]+)\]", line):
            section = match.group(1).split()[0]
        elif section and (match := re.match(r"^;?\s*([a-z_]+)\s*=", line)):
            found.setdefault(section, set()).add(match.group(1))
    return found


def test_the_example_lists_every_key_of_every_section() -> None:
    found = keys_by_section(EXAMPLE.read_text())
    for name, model in {**SECTIONS, "token": Token, "webhook": Webhook}.items():
        missing = sorted(set(model.model_fields) - found.get(name, set()))
        assert not missing, f"[{name}] keys missing from salara.conf.example: {missing}"


def test_the_example_loads() -> None:
    config = load(EXAMPLE, environ={})
    assert config.url.webhook_secret == "" and config.outbox.retry_for == 3 * 86400 and not config.webhooks
