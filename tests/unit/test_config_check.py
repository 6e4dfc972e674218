"""``salara check``: every problem of the config file and its includes, each with file:line."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from salara import config
from salara.cli import main

REPO = Path(__file__).parent.parent.parent
DATA = Path(__file__).parent.parent / "data"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    return path


def run_check(path: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, ["-c", str(path), "check"], env={"SALARA_CONFIG": None})
    return result.exit_code, result.output.splitlines()


def test_a_clean_file_is_ok() -> None:
    for path in (REPO / "salara.conf.example", DATA / "salara-old-module.conf"):
        code, lines = run_check(path)
        assert (code, lines) == (0, ["ok"]), path


def test_a_clean_tree_of_includes_is_ok(tmp_path: Path) -> None:
    main_file = write(tmp_path / "salara.conf", "[general]\ndefault=710\n#include secrets.conf\n#tryinclude none\n")
    write(tmp_path / "secrets.conf", "[ami]\nsecret=s\n")
    assert run_check(main_file) == (0, ["ok"])


def test_unknown_sections_and_keys_are_errors_with_file_and_line(tmp_path: Path) -> None:
    main_file = write(tmp_path / "salara.conf", "[general]\ndefault=710\nconsole=1\n#include extra.conf\n")
    extra = write(tmp_path / "extra.conf", "[whatever]\na=b\n[token crm]\nhash=sha256:" + "0" * 64 + "\nrole=x\n")
    code, lines = run_check(main_file)
    assert code == 1
    assert lines[0].startswith(f"{main_file}:3: [general] console")
    assert lines[1].startswith(f"{extra}:1: [whatever]")
    assert lines[2].startswith(f"{extra}:5: [token crm] role")
    assert len(lines) == 3


def test_every_bad_value_is_listed_not_only_the_first(tmp_path: Path) -> None:
    main_file = write(
        tmp_path / "salara.conf", "[general]\ncurlopt_timeout=soon\n[event]\nnewexten=7\nhangup=9\n[ami]\nport=0\n"
    )
    code, lines = run_check(main_file)
    assert code == 1
    assert len(lines) == 4
    assert {line.split(":", 2)[1] for line in lines} == {"2", "4", "5", "7"}
    assert any("curlopt_timeout" in line for line in lines) and any("port" in line for line in lines)


def test_syntax_errors_include_errors_and_exec_are_listed(tmp_path: Path) -> None:
    main_file = write(
        tmp_path / "salara.conf", "[general]\njust a line\n#include missing.conf\n#exec /bin/true\n[route]\n8001\n"
    )
    code, lines = run_check(main_file)
    assert code == 1
    assert [line.split(": ", 1)[0] for line in lines] == [f"{main_file}:{n}" for n in (2, 3, 4, 6)]
    assert "missing.conf" in lines[1] and "#exec" in lines[2]


def test_a_secret_never_shows_in_the_report(tmp_path: Path) -> None:
    main_file = write(tmp_path / "salara.conf", "[ami]\nsecret topsecret\n[url]\nwebhook_secret=whsec_!!!\n")
    code, lines = run_check(main_file)
    assert code == 1 and len(lines) == 2
    assert "topsecret" not in "\n".join(lines) and "whsec_!!!" not in "\n".join(lines)


def test_check_reads_the_environment_overrides_as_serve_does(tmp_path: Path) -> None:
    main_file = write(tmp_path / "salara.conf", "[general]\ndefault=710\n")
    problems = config.check(main_file, environ={"SALARA_AMI_PORT": "0"})
    assert [str(problem).split(": ", 1)[0] for problem in problems] == ["environment SALARA_AMI_PORT"]


def test_no_file_is_an_error(tmp_path: Path) -> None:
    code, lines = run_check(tmp_path / "none.conf")
    assert code == 1 and "cannot read" in lines[0]
