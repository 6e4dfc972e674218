"""A config split with ``#include``, as Asterisk admins split theirs, on a real salara and the test Asterisk."""

from __future__ import annotations

import httpx
import pytest

from salara.api.security import tokens as auth
from tests.conftest import EXAMPLE_CONFIG, SalaraFactory

pytestmark = pytest.mark.pbx


def test_the_ami_secret_and_a_token_in_included_files_are_honoured(salara_factory: SalaraFactory) -> None:
    token = auth.new_token()
    text = EXAMPLE_CONFIG.read_text()
    assert "secret=crmsecret\n" in text
    text = text.replace("secret=crmsecret\n", '#include "secrets/ami.conf"\n')
    text += "#tryinclude secrets/tokens-*.conf\n#tryinclude not-there.conf\n"
    salara = salara_factory(text, start=False)
    secrets = salara.workdir / "secrets"
    secrets.mkdir()
    (secrets / "ami.conf").write_text("secret=crmsecret\n")  # goes on in [ami], where its #include is
    (secrets / "tokens-crm.conf").write_text(f"[token crm]\nhash = {auth.hash_token(token)}\nrights = state\n")
    for path in secrets.iterdir():
        path.chmod(0o600)
    salara.secrets.add("crmsecret")
    salara.headers = {"Authorization": f"Bearer {token}"}
    salara.start()  # ready: logged in to AMI with the secret of the included file
    assert salara.post({"exten": "8001"}).json()["text"] != ""
    refused = httpx.post(salara.url, json={"exten": "8001"}, timeout=5)
    assert refused.status_code == 401  # a token exists (in the included file): loopback needs one too


def test_serve_warns_of_an_unknown_key_naming_its_file_and_line(salara_factory: SalaraFactory) -> None:
    text = EXAMPLE_CONFIG.read_text() + '#include "extra.conf"\n'
    salara = salara_factory(text, start=False)
    (salara.workdir / "extra.conf").write_text("[general]\n\nconsole = 1\n")
    salara.start()
    assert f"{salara.workdir / 'extra.conf'}:3: [general] console" in salara.log()
