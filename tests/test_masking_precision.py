"""Stored error text (reports, `runs show`, `runs import`) masked both too little and too much: it was split at
spaces, so `sshpass -p 'correct horse'` showed `horse'`; `-p X` was masked after any word, so edgekit's own hint
`labgrid-client -p pi4-a show` lost its place name and `mkdir -p results` its folder; and `Authorization: X`
masked any word (`Authorization: failed`). Host only: no device."""

from __future__ import annotations

import pytest

from edgekit.store.masked import masked_text
from edgekit.transport.proxy_text import masked_command, masked_output, secrets_of


@pytest.mark.parametrize(
    "text, shown",
    [
        (
            "connect: ProxyCommand sshpass -p 'correct horse' ssh -W %h:%p jump@bastion",
            "connect: ProxyCommand sshpass -p '***' ssh -W %h:%p jump@bastion",
        ),
        ('sshpass -p "correct horse battery" ssh jump', 'sshpass -p "***" ssh jump'),
        ("sshpass -p'correct horse' ssh jump", "sshpass -p'***' ssh jump"),
        ("proxy `x --token 'a b c' %h` failed", "proxy `x --token '***' %h` failed"),
        ('tunnel --password="correct horse" %h: refused', 'tunnel --password="***" %h: refused'),
        (
            "ProxyCommand('sshpass -p \"correct horse\" ssh -W %h:%p j') returned nonzero exit status: 5",
            "ProxyCommand('sshpass -p \"***\" ssh -W %h:%p j') returned nonzero exit status: 5",
        ),
        # a quote that does not close on its line: the rest of that line may be the password
        ("sshpass -p 'correct horse ssh -W %h:%p\nnext: mkdir -p x", "sshpass -p '***\nnext: mkdir -p x"),
    ],
)
def test_a_quoted_secret_with_spaces_is_masked_whole(text: str, shown: str) -> None:
    assert masked_text(text) == shown
    assert "horse" not in masked_text(text)


@pytest.mark.parametrize(
    "text",
    [
        "hint: start the exporter of pi4-a again, or `labgrid-client -p pi4-a show` to see what it matches",
        "labgrid-client -p pi4-a show; the exporter's YAML needs a NetworkService",
        "OSError: [Errno 2] mkdir -p results failed",
        "cannot reach the device (ssh -p 2222 pi@10.0.0.5): Connection refused",
        "nc -P alice proxy.corp 3128 failed: connection refused",
        "HTTP 401 Authorization: failed for user bob",
        "proxy said: Authorization: required-by-the-corporate-proxy",
        "sshpass -p '***' ssh -W %h:%p jump -p 2222 was stored masked already",
        "mysql -u root -P 3306 db: access denied",
    ],
)
def test_ordinary_words_after_p_and_authorization_are_kept(text: str) -> None:
    assert masked_text(text) == text


@pytest.mark.parametrize(
    "text, shown",
    [
        ("mysql -u root -pS3cretPw db: access denied", "mysql -u root -p*** db: access denied"),
        ("redis-cli -h cache -a hunter2secret ping", "redis-cli -h cache -a *** ping"),
        ("connect: ProxyCommand plink -pw hunter2secret jump", "connect: ProxyCommand plink -pw *** jump"),
        ("proxy_command=mytunnel -P hunter2 %h", "proxy_command=mytunnel -P *** %h"),
        ("sshpass -e -p hunter2 ssh -p 2222 jump", "sshpass -e -p *** ssh -p 2222 jump"),
        ("HTTP 401 Authorization: dXNlcjpwYXNzd29yZDEyMw== rejected", "HTTP 401 Authorization: *** rejected"),
        ("Authorization: Token abc rejected", "Authorization: Token *** rejected"),
    ],
)
def test_a_password_option_of_a_known_program_or_the_proxy_command_is_masked(text: str, shown: str) -> None:
    assert masked_text(text) == shown


def test_the_proxy_command_rules_still_mask_its_own_secrets() -> None:
    """A proxy command keeps masking `-p X` of any program (its program is the user's), a quoted password whole,
    and `plink -pw X`; what the proxy printed is masked of the same values."""
    command = "sshpass -p 'correct horse' ssh -W %h:%p jump@bastion"
    assert masked_command(command) == "sshpass -p '***' ssh -W %h:%p jump@bastion"
    assert secrets_of(command) == ["correct horse"]
    assert masked_command("plink -pw hunter2secret jump") == "plink -pw '***' jump"
    said = "plink: password 'hunter2secret' refused (Authorization: failed)"
    shown = masked_output(said, "plink -pw hunter2secret jump", ("jump",))
    assert shown == "plink: password '***' refused (Authorization: failed)", shown
