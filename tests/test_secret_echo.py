"""A proxy command's secret repeated alone by the tool (`password 'X' rejected`) was shown in clear on the console,
in the store and in the reports: errors masked only its whole argument words (`--password=X`), stored text only
`sshpass -p X`. Host only: no device and no sshd (the proxy fails before any SSH greeting)."""

from __future__ import annotations

from pathlib import Path

import pytest
from procs import board_file, deploy_through_proxy, named, run

from edgekit.store.masked import masked_text
from edgekit.transport.proxy_text import masked_command, masked_output

ROOT = Path(__file__).resolve().parent.parent

SECRET = "hunter2secret"


def _tunnel(tmp_path: Path) -> Path:
    """A tunnel tool that repeats its password, alone, when it fails (as many do)."""
    script = tmp_path / "tunnel.sh"
    script.write_text(
        "#!/bin/sh\necho \"tunnel: authentication failed: password '${2#--password=}' rejected by bastion\" >&2\n"
        "exit 3\n"
    )
    script.chmod(0o755)
    return script


def test_a_password_the_proxy_repeats_alone_is_masked_on_the_console(tmp_path: Path) -> None:
    """`targets check` printed "it said: tunnel: authentication failed: password 'hunter2secret' rejected"."""
    proxy = f"proxy_command={_tunnel(tmp_path)} %h --password={SECRET}"
    err = named(run("targets", "check", str(board_file(tmp_path)), "--set", proxy, cwd=tmp_path), code=1)
    text = " ".join(err.split())
    assert SECRET not in err and "failed before any SSH greeting (exit 3)" in text, err
    assert "it said: tunnel: authentication failed: password '***' rejected by bastion" in text, err


def test_a_password_the_proxy_repeats_alone_reaches_neither_the_store_nor_the_report(tmp_path: Path) -> None:
    out, json_text, rows = deploy_through_proxy(tmp_path, f"{_tunnel(tmp_path)} %h --password={SECRET}")
    assert SECRET not in out.stdout + out.stderr
    assert "password '***' rejected" in json_text and SECRET not in json_text
    assert rows and not any(SECRET in r for r in rows)


@pytest.mark.parametrize(
    "command, secret",
    [
        ("mytunnel --password=hunter2secret --token=tok_ABCDEF123 %h %p", "hunter2secret"),
        ("mytunnel --password=hunter2secret --token=tok_ABCDEF123 %h %p", "tok_ABCDEF123"),
        ("mytunnel --service-token-secret abcd1234 %h", "abcd1234"),
        ("sshpass -p hunter2 ssh -W %h:%p jump", "hunter2"),
        ("sshpass -phunter2 ssh -W %h:%p jump", "hunter2"),
        ("API_TOKEN=abc123 nc %h %p", "abc123"),
        ("corkscrew http://me:pw4711@proxy 8080 %h %p", "pw4711"),
        ("mytunnel --auth hunter2 %h", "hunter2"),
        ("mytunnel -P hunter2 %h", "hunter2"),
        ("mytunnel -p hunter2 %h", "hunter2"),
    ],
)
def test_each_secret_value_of_the_command_is_masked_where_the_proxy_prints_it(
    command: str, secret: str
) -> None:
    assert secret not in masked_command(command)
    said = f"login failed for {secret!r}; retry with {secret}."
    shown = masked_output(said, command, ("device.example", "22", "pi"))
    assert secret not in shown and shown == "login failed for '***'; retry with ***.", shown


def test_ports_paths_and_placeholders_are_no_secrets() -> None:
    """`ssh -p 2222`, `-p %p` and `mkdir -p /x` stay as they are (the hint's command still runnable)."""
    from edgekit.transport.proxy_text import secrets_of

    for command in (
        "ssh -p 2222 -W %h:%p bastion",
        "ssh -p %p bastion nc %h 22",
        "ssh -W %h:%p -P /tmp/x jump",
    ):
        assert masked_command(command) == command and secrets_of(command) == []
    said = "channel 0: open failed: administratively prohibited; port 2222 bastion"
    assert masked_output(
        said, "ssh -p 2222 -W %h:%p bastion", ("device.example", "22", "pi")
    ) == said.replace("2222", "***").replace("bastion", "***")  # its arguments, as before


@pytest.mark.parametrize(
    "text, shown",
    [
        ("connect: ProxyCommand mytunnel -p hunter2 %h", "connect: ProxyCommand mytunnel -p *** %h"),
        ("connect: ProxyCommand mytunnel -P hunter2 %h", "connect: ProxyCommand mytunnel -P *** %h"),
        ("connect: ProxyCommand mytunnel --auth hunter2 %h", "connect: ProxyCommand mytunnel --auth *** %h"),
        (
            "connect: ProxyCommand `mytunnel --auth=hunter2 %h`",
            "connect: ProxyCommand `mytunnel --auth=*** %h`",
        ),
        (
            "connect: proxy said: Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.secret",
            "connect: proxy said: Authorization: Bearer ***",
        ),
        ("proxy said: authorization: Basic dXNlcjpwYXNz (401)", "proxy said: authorization: Basic *** (401)"),
        ("tunnel: token 'Bearer abc123XYZ' refused", "tunnel: token 'Bearer ***' refused"),
        (
            "connect: ProxyCommand sshpass -p hunter2 ssh -W %h:%p jump",
            "connect: ProxyCommand sshpass -p *** ssh -W %h:%p jump",
        ),
    ],
)
def test_stored_text_masks_auth_p_and_bearer_values(text: str, shown: str) -> None:
    assert masked_text(text) == shown


@pytest.mark.parametrize(
    "text",
    [
        "load failed: no such file (model.param)",
        "mkdir -p /home/pi/edgekit failed: Permission denied",
        "cannot reach 127.0.0.1:2222 (ssh -p 2222 pi@127.0.0.1): Connection refused",
        "SSH failed: password authentication is disabled on the device; the bearer token expired",
        "the author of the recipe set auth: publickey, -p %p",
        "no SSH greeting came through the proxy_command within 5 s (exit 1)",
    ],
)
def test_ordinary_error_sentences_stay_intact(text: str) -> None:
    assert masked_text(text) == text
