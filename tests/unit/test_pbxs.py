"""Several PBXs: ids per PBX, ``[ami NAME]`` sections, which PBX serves what, FastAGI's allow list."""

from __future__ import annotations

import asyncio
import types
from pathlib import Path
from typing import cast

import pytest

from salara import config
from salara.agi.server import AGIServer, AGISession
from salara.ami.messages import Event
from salara.calls.call import listed_channel
from salara.calls.ids import DEFAULT_PBX, IdSpace, local_id, pbx_of
from salara.calls.registry import CallRegistry
from salara.errors import ConfigError, Unprocessable
from salara.logformat import CALL_ID
from salara.sites import Sites

BRANCH = """
[ami]
secret=a-secret
contexts=phones

[ami branch]
host=192.0.2.20
port=5039
username=crm
contexts=branch, branch-in
tls=yes
tls_ca=/etc/salara/branch-ca.pem
"""


def load(tmp_path: Path, text: str, **environ: str) -> config.Config:
    path = tmp_path / "salara.conf"
    path.write_text(text)
    path.chmod(0o600)
    return config.load(path, environ)


def newchannel(uniqueid: str, linkedid: str) -> Event:
    return Event(
        "Newchannel",
        (
            ("Channel", f"Local/7001@branch-{uniqueid}"),
            ("ChannelState", "4"),
            ("CallerIDNum", "7100"),
            ("Uniqueid", uniqueid),
            ("Linkedid", linkedid),
            ("BridgeUniqueid", "b-1"),
            ("DestUniqueid", uniqueid + "x"),
            ("Context", "branch"),
            ("Exten", "7001"),
        ),
    )


def test_a_pbx_but_default_has_its_ids_prefixed_and_default_keeps_asteriks() -> None:
    branch = IdSpace("branch")
    event = branch.event(newchannel("1733.42", "1733.41"))
    assert (event["Uniqueid"], event["Linkedid"], event["DestUniqueid"]) == (
        "branch:1733.42",
        "branch:1733.41",
        "branch:1733.42x",
    )
    assert event["BridgeUniqueid"] == "b-1" and event["Channel"] == "Local/7001@branch-1733.42"
    original = newchannel("1733.42", "1733.41")
    assert IdSpace().event(original) is original
    assert (pbx_of("branch:1733.41"), local_id("branch:1733.41")) == ("branch", "1733.41")
    assert (pbx_of("1733.41"), local_id("1733.41")) == (DEFAULT_PBX, "1733.41")
    assert branch.owns("branch:1") and not branch.owns("1") and IdSpace().owns("1") and not IdSpace().owns("b:1")
    assert branch.id("") == "" and branch.id("7") == "branch:7"


def test_a_resync_of_one_pbx_leaves_the_other_pbxs_channels_alone() -> None:
    registry = CallRegistry()
    branch = IdSpace("branch")
    for event in (newchannel("1.1", "1.1"), branch.event(newchannel("1.1", "1.1"))):
        registry.on_event(event, 100.0, 10.0)
    assert set(registry.channels) == {"1.1", "branch:1.1"}
    registry.begin_resync()
    result = registry.resync([], 101.0, 11.0, branch.owns)  # b lists no channel: only b's is gone
    assert [channel.uniqueid for channel in result.missed] == ["branch:1.1"]
    assert set(registry.channels) == {"1.1"}
    item = branch.event(Event("CoreShowChannel", (("Uniqueid", "2.1"), ("Linkedid", "2.1"), ("Channel", "L/x"))))
    registry.begin_resync()
    registry.resync([listed_channel(item)], 102.0, 12.0, branch.owns)
    assert set(registry.channels) == {"1.1", "branch:2.1"}


def test_ami_name_sections_are_pbxs_with_their_own_secret_from_the_environment(tmp_path: Path) -> None:
    loaded = load(tmp_path, BRANCH, SALARA_AMI_BRANCH_SECRET="b-secret", SALARA_AMI_SECRET="other")
    assert list(loaded.ami_sections()) == ["default", "branch"]
    branch = loaded.pbxs["branch"]
    assert (branch.host, branch.port, branch.secret, branch.contexts) == (
        "192.0.2.20",
        5039,
        "b-secret",
        ("branch", "branch-in"),
    )
    assert (branch.tls, branch.tls_ca) == (True, "/etc/salara/branch-ca.pem")
    assert loaded.ami.secret == "other"
    assert loaded.masked()["ami branch"]["secret"] == "***"


@pytest.mark.parametrize(
    ("text", "section", "key", "reason"),
    [
        (BRANCH + "\n[ami other]\ncontexts=branch\n", "ami other", "contexts", "served by [ami branch]"),
        ("[ami default]\nhost=192.0.2.1\n", "ami default", None, "'default' is the [ami] section's PBX"),
        ("[ami bad-name]\nhost=192.0.2.1\n", "ami bad-name", None, "letters, digits and '_'"),
        ("[agi]\nlisten=0.0.0.0:4573\n", "agi", "listen", "[agi] allow"),
        ("[agi]\nallow=192.0.2.300\n", "agi", "allow", "not an IP address or network"),
    ],
    ids=["context-twice", "default", "name", "agi-beyond-loopback", "agi-allow"],
)
def test_pbx_sections_refuse_what_cannot_work(
    tmp_path: Path, text: str, section: str, key: str | None, reason: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, text)
    assert (raised.value.section, raised.value.key) == (section, key)
    assert reason in str(raised.value)


def test_agi_may_listen_beyond_loopback_when_allow_names_the_pbxs(tmp_path: Path) -> None:
    loaded = load(tmp_path, "[agi]\nlisten=0.0.0.0:4573\nallow=192.0.2.20, 198.51.100.0/24\n")
    assert loaded.agi.allow == ("192.0.2.20", "198.51.100.0/24")


def test_the_pbx_of_a_request_a_call_and_a_fastagi_peer(tmp_path: Path) -> None:
    loaded = load(tmp_path, BRANCH + "\n[ami local]\nhost=127.0.0.1\nport=5040\n")
    sites = Sites.of(loaded)
    assert [site.name for site in sites] == ["default", "branch", "local"] and sites.several
    assert sites.serving("branch-in").name == "branch"
    assert sites.serving("phones").name == sites.serving("anything").name == "default"
    assert sites.serving("phones", "branch").name == "branch"
    with pytest.raises(Unprocessable) as raised:
        sites.serving("phones", "nowhere")
    assert raised.value.error == "unknown_pbx"
    assert sites.of_call("branch:salara-1").name == "branch" and sites.of_call("salara-1").name == "default"
    assert sites.of_call("gone:1").name == "default"
    assert sites.of_peer("192.0.2.20", None).name == "branch"
    assert sites.of_peer("::ffff:192.0.2.20", "local").name == "branch"  # the address wins over the word
    assert sites.of_peer("127.0.0.1", None).name == "default"  # two PBXs on loopback: the first ...
    assert sites.of_peer("127.0.0.1", "local").name == "local"  # ... unless the script names the other
    assert sites.of_peer("203.0.113.9", "branch").name == "branch"  # no AMI host matches: its word
    assert sites.of_peer("203.0.113.9", None).name == "default"


async def test_fastagi_serves_loopback_without_allow_and_only_the_allowed_with_it() -> None:
    async def handler(session: object) -> None:
        return None

    plain = AGIServer(handler)
    assert plain.allowed("127.0.0.1") and plain.allowed("127.0.0.2") and plain.allowed("::1")
    assert not plain.allowed("192.0.2.20") and not plain.allowed("not-an-address")
    listed = AGIServer(handler, allow=("127.0.0.1", "198.51.100.0/24"))
    assert listed.allowed("127.0.0.1") and listed.allowed("198.51.100.7") and listed.allowed("::ffff:198.51.100.7")
    assert not listed.allowed("127.0.0.2") and not listed.allowed("192.0.2.20")


async def test_a_fastagi_sessions_log_lines_name_the_call_of_its_pbx(tmp_path: Path) -> None:
    sites = Sites.of(load(tmp_path, BRANCH))
    registry = CallRegistry()
    registry.on_event(IdSpace("branch").event(newchannel("5.1", "5.0")), 100.0, 10.0)
    registry.on_event(newchannel("5.1", "4.0"), 100.0, 10.0)  # the same Uniqueid on the default PBX
    seen: list[str | None] = []

    async def handler(session: object) -> None:
        label = CALL_ID.get()
        seen.append(label() if label is not None else None)

    labelled = sites.with_call_id(registry.channels, handler)
    for peer, query in (("192.0.2.20:4242", {}), ("127.0.0.1:4242", {}), ("203.0.113.9:4242", {"pbx": "branch"})):
        request = types.SimpleNamespace(uniqueid="5.1", query=query)
        await asyncio.create_task(labelled(cast(AGISession, types.SimpleNamespace(peer=peer, request=request))))
    assert seen == ["branch:5.0", "4.0", "branch:5.0"]
