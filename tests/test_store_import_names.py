"""What `runs import` refuses before recording anything, and what a report and `edgekit runs` show of what is
recorded (host only: SQLite files, the host target, no device). An imported artifact named with 53 characters
was recorded, then every report of that store crashed (`left cannot be >= right`); a run dated year 0001 crashed
the report's time axis; `edgekit runs` on a terminal cut long recipe and target names; a password with an
unencoded `@` was printed in part; the line after `deploy --store FILE` pointed at the default store."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np
import procs
import pytest

from edgekit.formats import Format
from edgekit.report.synthetic import synthetic_result

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"
T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


_edgekit = partial(procs.run, timeout=300)


def _file(tmp_path: Path, name: str = "result.json", **kw: object) -> tuple[Path, dict]:
    result = synthetic_result(
        T0,
        rng=np.random.default_rng(0),
        formats=(Format.TFLITE_FP32, Format.NCNN_FP32),
        threads=(1,),
        repeat=12,
        **kw,  # type: ignore[arg-type]
    )
    data = json.loads(result.model_dump_json())
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path, data


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("artifact", "n" * 53),
        ("format", "f" * 300),
        ("runtime", "nc nn"),
    ],
)
def test_an_artifact_format_or_runtime_a_deploy_never_writes_is_refused(
    tmp_path: Path, where: str, value: str
) -> None:
    path, data = _file(tmp_path)
    data["runs"][0]["agent"]["measurements"][0][where] = value
    path.write_text(json.dumps(data))
    store = tmp_path / "s.sqlite"
    out = _edgekit("runs", "import", str(path), "--store", str(store), home=tmp_path / "home")
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"field `runs.0.agent.measurements.0.{where}`" in out.stderr, out.stderr
    assert len(value) < 40 or value not in out.stderr  # a long hostile value is quoted in part
    assert "internal error" not in out.stderr and not store.exists()


def test_a_long_label_never_breaks_a_panel() -> None:
    """new_panel sized the left margin from the longest label with no cap: past ~55 characters the margin was
    wider than the figure and matplotlib raised `left cannot be >= right` for the whole report."""
    from edgekit.report.panels import WIDTH_IN, finish, new_panel

    for label in ("n" * 53, "x" * 400):
        fig, ax = new_panel(rows=2, labels=[label, "tflite-fp32"])
        ax.barh([0, 1], [1.0, 2.0])
        ax.set_yticks([0, 1], [label, "tflite-fp32"])
        plot_width = fig.subplotpars.right - fig.subplotpars.left
        assert plot_width * WIDTH_IN >= 1.5  # the bars keep room to be read
        panel = finish(fig, "caption", False, "")
        assert panel.svg is not None and "<svg" in panel.svg


@pytest.mark.parametrize("started", ["0001-01-01T00:00:00+00:00", "1999-12-31T23:59:59+00:00"])
def test_a_run_dated_before_2000_is_refused(tmp_path: Path, started: str) -> None:
    """A run dated year 0001 was recorded, then `report --since all` crashed: `Matplotlib dates must be between
    year 0001 and 9999`."""
    path, data = _file(tmp_path)
    data["started_at"] = started
    path.write_text(json.dumps(data))
    store = tmp_path / "s.sqlite"
    out = _edgekit("runs", "import", str(path), "--store", str(store), home=tmp_path / "home")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "started_at" in out.stderr and "before 2000" in out.stderr, out.stderr
    assert not store.exists()


def test_runs_on_a_terminal_cuts_no_recipe_or_target_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two boards `rack2-rpi4-8gb-slot07-a` and `-b` were both listed as `rack2-rpi4-8gb-slot0…` at 100 columns."""
    from edgekit.cli import runs as runs_cli
    from edgekit.store import open_store
    from edgekit.terminal import Console

    recipe = "mobilenet-v3-small-imagenet-int8-calib"
    boards = ("rack2-rpi4-8gb-slot07-a", "rack2-rpi4-8gb-slot07-b", "rack2-rpi5-8gb-slot01-a")
    result = synthetic_result(
        T0,
        rng=np.random.default_rng(1),
        formats=(Format.TFLITE_FP32,),
        threads=(1,),
        targets=("pi4", "pi5", "pi4"),
        recipe=recipe,
    )
    renamed = [run.model_copy(update={"target": board}) for run, board in zip(result.runs, boards)]
    result = result.model_copy(update={"runs": renamed})
    store = tmp_path / "s.sqlite"
    with open_store(str(store)) as db:
        db.record(result)
    for width in (100, 120):
        buffer = io.StringIO()
        monkeypatch.setattr(
            runs_cli, "console", Console(file=buffer, width=width, force_terminal=True, color_system=None)
        )
        runs_cli._print_runs(20, None, None, str(store))
        text = buffer.getvalue()
        assert "…" not in text, text
        body = [line.split("│") for line in text.splitlines() if line.startswith("│")]
        column = {
            name: "".join(cells[i].strip() for cells in body) for i, name in ((3, "recipe"), (4, "targets"))
        }
        assert column["recipe"] == recipe, text  # folded over lines, read back whole
        assert column["targets"] == ",".join(boards), text
        assert max(len(line) for line in text.splitlines()) <= width


def test_a_password_with_an_unencoded_at_is_refused_and_never_printed(tmp_path: Path) -> None:
    """`postgresql://edgekit:p@ssAT@127.0.0.1:54395/ek1` printed `edgekit:***@ssAT@127.0.0.1` and the driver's
    `failed to resolve host 'ssAT@127.0.0.1'`: part of the password, twice."""
    url = "postgresql://edgekit:p@ssAT@127.0.0.1:54395/ek1"
    for args in (("runs", "--store", url), ("runs", "import", str(_file(tmp_path)[0]), "--store", url)):
        out = _edgekit(*args, home=tmp_path / "home")
        said = out.stdout + out.stderr
        assert out.returncode == 2, said
        assert "ssAT" not in said and "percent-encode @ in the password as %40" in said, said
    out = _edgekit("runs", home=tmp_path / "home", EDGEKIT_STORE=url)
    assert out.returncode == 2 and "ssAT" not in out.stdout + out.stderr, out.stdout + out.stderr


def test_the_drivers_message_is_masked_of_every_password_fragment() -> None:
    """Connecting (bypassing the refusal) to the misread URL: psycopg names the host `ssAT@127.0.0.1`, a part of
    the password; the StoreError edgekit makes of it shows none of it."""
    from sqlalchemy.exc import SQLAlchemyError

    from edgekit.store.engine import make_engine
    from edgekit.store.failures import _failure
    from edgekit.store.location import _shown, resolve_url

    url = resolve_url("postgresql://edgekit:p@ssAT@127.0.0.1:54395/ek1")
    assert "ssAT" not in _shown(url)
    engine = make_engine(url)
    with pytest.raises(SQLAlchemyError) as caught:
        engine.connect()
    engine.dispose()
    assert "ssAT" in str(caught.value)  # the driver does say it
    error = _failure(caught.value, "cannot read", _shown(url), None)
    assert "ssAT" not in f"{error.message} {error.where} {error.hint}", error.message


def test_deploy_store_names_the_store_in_its_follow_up_commands(tmp_path: Path) -> None:
    """`recorded as run 31 (edgekit runs / edgekit report)` after `deploy --store FILE`: pasted, both looked in
    the default store, which does not have run 31."""
    store = tmp_path / "team store.sqlite"
    home = tmp_path / "home"
    done = _edgekit("deploy", str(RECIPE), "-f", "onnx-fp32", "--store", str(store), home=home, COLUMNS="200")
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("recorded as run"))
    run_id = re.search(r"run (\d+)", line)
    assert run_id, line
    commands = re.findall(r"`([^`]+)`", line)
    assert len(commands) == 2, line
    import shlex

    runs_cmd = shlex.split(commands[0])
    assert runs_cmd[:2] == ["edgekit", "runs"], line
    listed = _edgekit(*runs_cmd[1:], home=home)  # pasted as printed: the run is there
    assert listed.returncode == 0 and re.search(rf"│\s*{run_id.group(1)}\s*│", listed.stdout), listed.stdout
    assert shlex.split(commands[1])[:2] == ["edgekit", "report"] and str(store) in shlex.split(commands[1]), (
        line
    )


def test_the_follow_ups_of_a_server_store_carry_no_password() -> None:
    """The URL is named as the report's `runs accept` line names it: without the password (libpq then reads
    PGPASSWORD or ~/.pgpass), so the line can be pasted and shows no secret."""
    from edgekit.cli.deploy import follow_ups

    said = follow_ups("postgresql://edgekit:s3cretpw@db.lab:5433/results?password=other1")
    assert "s3cretpw" not in said and "other1" not in said and "***" not in said, said
    assert said.count("--store postgresql://edgekit@db.lab:5433/results") == 2, said
    assert follow_ups(None) == "`edgekit runs` / `edgekit report`"


def test_a_user_name_with_an_at_is_a_store_url_and_only_the_password_is_masked(tmp_path: Path) -> None:
    """The refusal of a password with an '@' refused Azure's `user@server` logins too (exit 2), and masking every
    piece of a password blanked `postgres:postgres@.../postgres` to `***ql+psycopg://***:***@localhost/***`
    (review of the day's diff). Both URLs reach the server again (nothing listens: exit 1), printed readably."""
    for url, shown in (
        (
            "postgresql://alice@myserver:s3cret@127.0.0.1:1/edgekit",
            "alice%40myserver:***@127.0.0.1:1/edgekit",
        ),
        (
            "postgresql://postgres:postgres@127.0.0.1:1/postgres",
            "postgresql+psycopg://postgres:***@127.0.0.1:1/postgres",
        ),
        ("postgresql://edgekit:local@localhost:1/edgekit", "edgekit:***@localhost:1/edgekit"),
    ):
        out = _edgekit("runs", "--store", url, home=tmp_path / "home")
        said = " ".join((out.stdout + out.stderr).split())
        assert out.returncode == 1, said  # a server that cannot be reached, not a bad URL
        assert shown in said, said
        assert "s3cret" not in said and ":postgres@" not in said and ":local@" not in said, said


def test_a_password_with_an_at_and_a_slash_is_refused_and_never_printed(tmp_path: Path) -> None:
    """`u:p@ss/word@host`: the '@' check looked at the part before the first '/', saw the password `p` and let the
    URL through; the driver named host 'ss' and the printed commands carried `ss/word` (security review)."""
    from edgekit.store.location import _shown, command_url

    url = "postgresql+psycopg://u:p@ss/word@127.0.0.1:1/db"
    out = _edgekit("runs", "--store", url, home=tmp_path / "home")
    said = out.stdout + out.stderr
    assert out.returncode == 2 and "percent-encode @" in said, said
    assert "ss/word" not in said and "word" not in said.replace("password", ""), said
    for shown in (_shown(url), command_url(url)):
        assert "ss/word" not in shown and shown.endswith("@127.0.0.1:1/db"), shown
    # a password with a '/' and no '@' is SQLAlchemy's to read whole: a store URL, its password hidden
    out = _edgekit("runs", "--store", "postgresql://u:pa/ss@127.0.0.1:1/db", home=tmp_path / "home")
    said = " ".join((out.stdout + out.stderr).split())
    assert out.returncode == 1 and "pa/ss" not in said and "u:***@127.0.0.1:1/db" in said, said
