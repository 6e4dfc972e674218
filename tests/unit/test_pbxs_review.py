"""Several PBXs, reviewed: names in any case, environment overrides beside PBX names, FastAGI's word, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from salara import config
from salara.errors import ConfigError, Unprocessable
from salara.sites import Sites

TEXT = """
[ami]
secret=a-secret-1234
contexts=phones

[ami Branch2]
host=192.0.2.20
port=5039
username=crm
secret=b-secret-from-file-5678
contexts=branch

[ami ping]
host=192.0.2.30
contexts=pingctx
"""


def load(tmp_path: Path, text: str = TEXT, **environ: str) -> config.Config:
    path = tmp_path / "salara.conf"
    path.write_text(text)
    path.chmod(0o600)
    return config.load(path, environ)


def test_a_pbx_name_in_upper_case_and_digits_is_found_in_any_case(tmp_path: Path) -> None:
    loaded = load(tmp_path)
    assert list(loaded.pbxs) == ["branch2", "ping"]  # section names are read in lower case
    sites = Sites.of(loaded)
    assert sites.named("Branch2").name == sites.named("BRANCH2").name == "branch2"
    assert sites.serving("phones", "Branch2").name == "branch2"
    assert sites.named("DEFAULT") is sites.default
    assert sites.of_peer("203.0.113.9", "BRANCH2").name == "branch2"  # FastAGI's ?pbx= in any case
    assert sites.of_peer("203.0.113.9", "nowhere") is sites.default  # a ?pbx= no section names: default's
    with pytest.raises(Unprocessable) as raised:
        sites.named("Branch3")
    assert raised.value.error == "unknown_pbx"


def test_a_pbxs_secret_comes_from_the_environment_with_its_name_in_any_case(tmp_path: Path) -> None:
    for variable in ("SALARA_AMI_BRANCH2_SECRET", "SALARA_AMI_branch2_SECRET", "SALARA_AMI_Branch2_secret"):
        loaded = load(tmp_path, **{variable: "env-b-secret-9999"})
        assert loaded.pbxs["branch2"].secret == "env-b-secret-9999", variable
        assert loaded.ami.secret == "a-secret-1234", variable


def test_an_ami_key_that_starts_with_a_pbxs_name_stays_the_ami_sections(tmp_path: Path) -> None:
    """``[ami ping]`` beside ``SALARA_AMI_PING_INTERVAL``: that is ``[ami] ping_interval``, not ping's ``interval``."""
    text = TEXT + "\n[ami tls]\nhost=192.0.2.40\ncontexts=tlsctx\n"
    loaded = load(tmp_path, text, SALARA_AMI_PING_INTERVAL="3", SALARA_AMI_TLS_CA="/etc/ca.pem")
    assert loaded.ami.ping_interval == 3.0
    assert loaded.ami.tls_ca == "/etc/ca.pem"
    assert loaded.pbxs["ping"].ping_interval == 20.0 and loaded.pbxs["tls"].tls_ca == ""
    path = tmp_path / "salara.conf"
    assert config.check(path, {"SALARA_AMI_PING_INTERVAL": "3"}) == []
    # The PBX's own keys still go to it.
    loaded = load(tmp_path, text, SALARA_AMI_PING_PING_INTERVAL="4", SALARA_AMI_PING_SECRET="ping-secret-1")
    assert (loaded.pbxs["ping"].ping_interval, loaded.pbxs["ping"].secret) == (4.0, "ping-secret-1")
    assert loaded.ami.ping_interval == 20.0


def test_the_environment_cannot_add_a_pbx_that_the_file_does_not_have(tmp_path: Path) -> None:
    loaded = load(tmp_path, SALARA_AMI_NOPE_SECRET="nope-secret-1", SALARA_AMI_NOPE_HOST="192.0.2.99")
    assert list(loaded.ami_sections()) == ["default", "branch2", "ping"]
    assert loaded.ami.secret == "a-secret-1234" and loaded.ami.host == "127.0.0.1"
    problems = config.check(tmp_path / "salara.conf", {"SALARA_AMI_NOPE_SECRET": "nope-secret-1"})
    assert [(p.section, p.key) for p in problems] == [("ami", "nope_secret")]


@pytest.mark.parametrize("listen", ["0.0.0.0:4573", "[::]:4573", "192.0.2.5:4573"])
def test_agi_beyond_loopback_without_allow_is_refused_with_a_clear_message(tmp_path: Path, listen: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, TEXT + f"\n[agi]\nlisten={listen}\n")
    assert (raised.value.section, raised.value.key) == ("agi", "listen")
    assert "name the PBXs' addresses in [agi] allow" in str(raised.value)


def cli(tmp_path: Path, *args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALARA_")} | environ
    return subprocess.run(
        [sys.executable, "-m", "salara", "-c", str(tmp_path / "salara.conf"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_show_config_and_check_list_every_pbx_with_its_secret_masked(tmp_path: Path) -> None:
    load(tmp_path)  # writes the file
    shown = cli(tmp_path, "show", "config", SALARA_AMI_BRANCH2_SECRET="env-b-secret-9999")
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "[ami branch2]" in out and "[ami ping]" in out
    branch = out.split("[ami branch2]", 1)[1].split("\n\n", 1)[0]
    assert "secret=***" in branch and "host=192.0.2.20" in branch and "contexts=branch" in branch
    for secret in ("env-b-secret-9999", "b-secret-from-file-5678", "a-secret-1234"):
        assert secret not in out + shown.stderr
    checked = cli(tmp_path, "check")
    assert checked.returncode == 0 and "ok" in checked.stdout, checked.stdout + checked.stderr
    (tmp_path / "salara.conf").write_text(TEXT + "\n[ami other]\ncontexts=branch\n")
    twice = cli(tmp_path, "check")
    assert twice.returncode == 1
    assert "[ami branch2]" in twice.stdout + twice.stderr and "'branch'" in twice.stdout + twice.stderr
