"""A board that does not answer is said before the conversions (edgekit.deploy.reach), not only after them."""

from __future__ import annotations

import socket
from pathlib import Path

from procs import board_file

from edgekit.deploy.reach import probed, unreachable
from edgekit.target import load_target

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _board(tmp_path: Path, extra: str = "", port: int | None = None) -> Path:
    return board_file(tmp_path, extra, port or _free_port())


def test_only_boards_reached_directly_are_probed_and_a_listening_port_is_reachable(tmp_path: Path) -> None:
    board = load_target(str(_board(tmp_path)))
    assert probed(board) and unreachable(board) == "connection refused"
    assert not probed(load_target(str(_board(tmp_path, "proxy_jump: bastion.example\n"))))
    assert not probed(load_target("pi4-emu")) and not probed(load_target("local"))
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        up = load_target(str(_board(tmp_path, port=listening.getsockname()[1])))
        assert unreachable(up) is None


def test_deploy_says_an_unreachable_board_before_it_converts(tmp_path: Path) -> None:
    """The refused port is said first; the conversion still runs and the board's stage fails with its named
    error after it (exit 1), as before."""
    from procs import run

    board = str(_board(tmp_path))
    out = run(
        "deploy",
        str(ROOT / "recipes" / "tiny.yaml"),
        "--target",
        board,
        "--format",
        "ncnn-fp32",
        "--no-store",
        cwd=tmp_path,
        timeout=300,
    )
    text = " ".join((out.stdout + out.stderr).split())
    said = text.index("my-board: not reachable now (127.0.0.1:")
    assert said < text.index("convert:") and "connection refused); converting first" in text[said:], text
    assert out.returncode == 1 and "my-board: FAILED connect" in text, text
