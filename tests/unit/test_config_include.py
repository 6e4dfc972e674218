"""``#include`` and ``#tryinclude`` read as Asterisk reads them; edits go to the file that holds the section."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from salara import config
from salara.api.security import tokens as auth
from salara.errors import ConfigError
from salara.routing.table import RouteTable


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(
    "directive",
    ['#include "secrets.conf"', "#include secrets.conf", "#include <secrets.conf>", '#INCLUDE "secrets.conf" ; ami'],
)
def test_secrets_in_an_included_file_are_honoured(tmp_path: Path, directive: str) -> None:
    main = write(tmp_path / "salara.conf", f"[general]\ndefault=710\n{directive}\n")
    write(tmp_path / "secrets.conf", "[ami]\nsecret = from-the-include\n[url]\nwebhook_secret = hook\n")
    loaded = config.load(main, environ={})
    assert loaded.ami.secret == "from-the-include"
    assert loaded.url.webhook_secret == "hook"
    assert loaded.general.default == "710"


def test_environment_overrides_still_win_over_included_files(tmp_path: Path) -> None:
    main = write(tmp_path / "salara.conf", '#include "secrets.conf"\n')
    write(tmp_path / "secrets.conf", "[ami]\nsecret = file\n")
    assert config.load(main, environ={"SALARA_AMI_SECRET": "env"}).ami.secret == "env"


def test_nested_includes_resolve_against_the_main_files_directory(tmp_path: Path) -> None:
    main = write(tmp_path / "etc" / "salara.conf", '[general]\n#include "conf.d/one.conf"\n')
    write(tmp_path / "etc" / "conf.d" / "one.conf", "default = 710\n#include two.conf\n")
    write(tmp_path / "etc" / "two.conf", "[ami]\nsecret = beside-the-main-file\n")
    write(tmp_path / "etc" / "conf.d" / "two.conf", "[ami]\nsecret = beside-the-including-file\n")
    loaded = config.load(main, environ={})
    assert loaded.general.default == "710"  # the include went on in [general]
    assert loaded.ami.secret == "beside-the-main-file"


def test_an_absolute_include(tmp_path: Path) -> None:
    other = write(tmp_path / "elsewhere" / "secrets.conf", "[ami]\nsecret = abs\n")
    main = write(tmp_path / "salara.conf", f"#include {other}\n")
    assert config.load(main, environ={}).ami.secret == "abs"


def test_a_file_included_inside_a_section_goes_on_in_it_and_the_includer_keeps_its_own(tmp_path: Path) -> None:
    main = write(tmp_path / "salara.conf", '[route]\n#include "routes.conf"\n5550003:8003\n[general]\ndefault=710\n')
    write(tmp_path / "routes.conf", "5550001:8001\n5550002:8002\n[ami]\nsecret = x\n")
    loaded = config.load(main, environ={})
    assert loaded.routes == {"5550001": "8001", "5550002": "8002", "5550003": "8003"}
    assert loaded.ami.secret == "x"


def test_a_glob_in_the_file_name_includes_every_match_in_order(tmp_path: Path) -> None:
    main = write(tmp_path / "salara.conf", '[general]\ndefault=710\n#include "salara.d/*.conf"\n')
    write(tmp_path / "salara.d" / "20-routes.conf", "[route]\n5550002:8002\n[ami]\nsecret = second\n")
    write(tmp_path / "salara.d" / "10-ami.conf", "[ami]\nsecret = first\nusername = crm\n")
    write(tmp_path / "salara.d" / "ignored.txt", "[ami]\nsecret = not-a-match\n")
    loaded = config.load(main, environ={})
    assert (loaded.ami.secret, loaded.ami.username) == ("second", "crm")
    assert loaded.routes == {"5550002": "8002"}


def test_braces_expand_as_asterisks_glob_does(tmp_path: Path) -> None:
    main = write(tmp_path / "salara.conf", "#include {ami,url}.conf\n")
    write(tmp_path / "ami.conf", "[ami]\nsecret = a\n")
    write(tmp_path / "url.conf", "[url]\nwebhook_secret = u\n")
    loaded = config.load(main, environ={})
    assert (loaded.ami.secret, loaded.url.webhook_secret) == ("a", "u")


@pytest.mark.parametrize("target", ["missing.conf", "salara.d/*.conf"])
def test_include_of_a_missing_file_is_an_error_naming_the_line(tmp_path: Path, target: str) -> None:
    main = write(tmp_path / "salara.conf", f"[general]\ndefault=710\n#include {target}\n")
    with pytest.raises(ConfigError) as caught:
        config.load(main, environ={})
    assert "line 3" in str(caught.value) and str(main) in str(caught.value) and target in str(caught.value)


@pytest.mark.parametrize("target", ["missing.conf", "salara.d/*.conf"])
def test_tryinclude_of_a_missing_file_is_not(tmp_path: Path, target: str) -> None:
    main = write(tmp_path / "salara.conf", f"[general]\ndefault=710\n#tryinclude {target}\n")
    assert config.load(main, environ={}).general.default == "710"


def test_tryinclude_of_a_present_file_reads_it(tmp_path: Path) -> None:
    main = write(tmp_path / "salara.conf", '#tryinclude "secrets.conf"\n')
    write(tmp_path / "secrets.conf", "[ami]\nsecret = s\n")
    assert config.load(main, environ={}).ami.secret == "s"


def test_an_include_loop_is_an_error_naming_both_files(tmp_path: Path) -> None:
    main = write(tmp_path / "salara.conf", "[general]\n#include a.conf\n")
    write(tmp_path / "a.conf", "#include b.conf\n")
    write(tmp_path / "b.conf", "default=1\n#include a.conf\n")
    with pytest.raises(ConfigError) as caught:
        config.load(main, environ={})
    message = str(caught.value)
    assert str(tmp_path / "b.conf") in message and str(tmp_path / "a.conf") in message
    assert "loop" in message and "line 2" in message


def test_a_file_including_itself_is_a_loop(tmp_path: Path) -> None:
    main = write(tmp_path / "salara.conf", '[general]\n#include "salara.conf"\n')
    with pytest.raises(ConfigError, match="loop"):
        config.load(main, environ={})


def test_the_same_file_included_twice_is_not_a_loop(tmp_path: Path) -> None:
    main = write(tmp_path / "salara.conf", "[route]\n#include r.conf\n[general]\n#include r.conf\n")
    write(tmp_path / "r.conf", "; shared\n")
    config.load(main, environ={})


@pytest.mark.parametrize("line", ["#exec /bin/echo", '#exec "/usr/local/bin/make-salara-conf"', "#EXEC x"])
def test_exec_is_refused_naming_the_line(tmp_path: Path, line: str) -> None:
    main = write(tmp_path / "salara.conf", f"[general]\ndefault=710\n{line}\n")
    with pytest.raises(ConfigError) as caught:
        config.load(main, environ={})
    assert "line 3" in str(caught.value) and "#exec" in str(caught.value)


def test_exec_in_an_included_file_is_refused_naming_that_file(tmp_path: Path) -> None:
    main = write(tmp_path / "salara.conf", "#include inc.conf\n")
    write(tmp_path / "inc.conf", "[general]\n#exec /bin/true\n")
    with pytest.raises(ConfigError) as caught:
        config.load(main, environ={})
    assert f"line 2 of {tmp_path / 'inc.conf'}" in str(caught.value)


def test_other_hash_lines_stay_comments(tmp_path: Path) -> None:
    main = write(tmp_path / "salara.conf", "# a comment\n[general]\n#default=1\n#includes are fine\ndefault=710\n")
    assert config.load(main, environ={}).general.default == "710"


def test_unknown_keys_in_an_included_file_warn_naming_file_and_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    main = write(tmp_path / "salara.conf", "[general]\ndefault=710\n#include extra.conf\n")
    write(tmp_path / "extra.conf", "[general]\n\nconsole=1\n[whatever]\na=b\n")
    with caplog.at_level(logging.WARNING, "salara.config"):
        loaded = config.load(main, environ={})
    assert loaded.general.default == "710"
    assert f"{tmp_path / 'extra.conf'}:3: [general] console" in caplog.text
    assert f"{tmp_path / 'extra.conf'}:4: [whatever]" in caplog.text


def test_an_included_world_readable_file_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    main = write(tmp_path / "salara.conf", "#include secrets.conf\n")
    write(tmp_path / "secrets.conf", "[ami]\nsecret=s\n").chmod(0o644)
    config.load(main, environ={})
    assert f"{tmp_path / 'secrets.conf'} is readable by every user" in caplog.text


def test_load_tokens_reads_included_files(tmp_path: Path) -> None:
    main = write(tmp_path / "salara.conf", "[general]\n#include tokens.conf\n")
    write(tmp_path / "tokens.conf", f"[token crm]\nhash = {auth.hash_token('c' * 43)}\nrights = state\n")
    assert list(config.load_tokens(main)) == ["crm"]


# -- edits go to the file that holds the section ------------------------------------


def tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    main = write(
        tmp_path / "salara.conf",
        "[general]\ndefault=710\n#include routes.conf\n#include tokens.conf\n[token local]\n"
        f"hash = {auth.hash_token('l' * 43)}\nrights = state\n",
    )
    routes = write(tmp_path / "routes.conf", "; the route table\n[route]\n5550001:8001\n5550002:8002\n")
    tokens = write(tmp_path / "tokens.conf", f"[token crm]\nhash = {auth.hash_token('c' * 43)}\nrights = state\n")
    return main, routes, tokens


def test_a_route_edit_goes_to_the_file_that_holds_the_route_section(tmp_path: Path) -> None:
    main, routes, _ = tree(tmp_path)
    before = main.read_text()
    config.save_route(main, "5550002", "9002")
    config.save_route(main, "5550003", "8003")
    config.save_route(main, "5550001", None)
    assert main.read_text() == before
    assert routes.read_text() == "; the route table\n[route]\n5550002:9002\n5550003:8003\n"
    assert config.load(main, environ={}).routes == {"5550002": "9002", "5550003": "8003"}


def test_a_route_edit_in_a_file_included_inside_the_route_section(tmp_path: Path) -> None:
    main = write(tmp_path / "salara.conf", "[route]\n#include routes.conf\n[general]\ndefault=710\n")
    routes = write(tmp_path / "routes.conf", "5550001:8001\n")
    config.save_route(main, "5550001", "9001")
    config.save_route(main, "5550002", "8002")
    assert routes.read_text() == "5550001:9001\n5550002:8002\n"
    assert "[route]\n#include routes.conf\n[general]" in main.read_text()
    assert config.load(main, environ={}).routes == {"5550001": "9001", "5550002": "8002"}


def test_a_new_route_section_goes_to_the_main_file(tmp_path: Path) -> None:
    main = write(tmp_path / "salara.conf", "[general]\ndefault=710\n#include ami.conf\n")
    ami = write(tmp_path / "ami.conf", "[ami]\nsecret=s\n")
    config.save_route(main, "5550001", "8001")
    assert ami.read_text() == "[ami]\nsecret=s\n"
    assert main.read_text().endswith("[route]\n5550001:8001\n")


def test_a_route_defined_twice_is_deleted_everywhere(tmp_path: Path) -> None:
    main = write(tmp_path / "salara.conf", "[route]\n5550001:8001\n#include routes.conf\n")
    write(tmp_path / "routes.conf", "5550001:9001\n")
    config.save_route(main, "5550001", None)
    assert config.load(main, environ={}).routes == {}


def test_token_edits_go_to_the_file_that_holds_the_token(tmp_path: Path) -> None:
    main, _, tokens = tree(tmp_path)
    values = {"hash": auth.hash_token("n" * 43), "rights": "call", "destinations": "any"}
    config.save_token(main, "crm", values)  # --replace of a token in tokens.conf
    assert "[token crm]" not in main.read_text() and values["hash"] in tokens.read_text()
    config.save_token(main, "new", {"hash": auth.hash_token("x" * 43), "rights": "state"})
    assert "[token new]" in main.read_text() and "[token new]" not in tokens.read_text()
    config.save_token(main, "crm", None)
    assert "[token crm]" not in tokens.read_text()
    config.save_token(main, "local", None)
    assert sorted(config.load(main, environ={}).tokens) == ["new"]


def test_a_token_edit_is_checked_against_the_whole_tree(tmp_path: Path) -> None:
    main, _, _ = tree(tmp_path)
    before = main.read_text()
    with pytest.raises(ConfigError, match="same token"):
        config.save_token(main, "again", {"hash": auth.hash_token("c" * 43), "rights": "state"})
    assert main.read_text() == before


def test_an_edit_of_an_included_file_changes_the_main_files_stamp(tmp_path: Path) -> None:
    """Whatever watches the main file (the token reloader) sees an edit made in an included file."""
    main, _, _ = tree(tmp_path)
    os.utime(main, ns=(0, 0))
    config.save_token(main, "crm", None)
    assert main.stat().st_mtime_ns > 0


def test_the_route_table_is_re_read_when_an_included_file_changes(tmp_path: Path) -> None:
    main, routes, _ = tree(tmp_path)
    table = RouteTable(main, dict(config.load(main, environ={}).routes))
    assert table.current() == {"5550001": "8001", "5550002": "8002"}
    routes.write_text("[route]\n5550009:8009\n")
    os.utime(main, ns=(0, 0))  # only the included file changed
    assert table.current() == {"5550009": "8009"}


def test_the_route_table_sees_a_new_file_matching_a_glob(tmp_path: Path) -> None:
    main = write(tmp_path / "salara.conf", "[route]\n#tryinclude salara.d/*.conf\n")
    (tmp_path / "salara.d").mkdir()
    table = RouteTable(main, {})
    assert table.current() == {}
    write(tmp_path / "salara.d" / "r.conf", "5550001:8001\n")
    assert table.current() == {"5550001": "8001"}
