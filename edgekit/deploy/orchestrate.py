"""`deploy`: recipe -> artifacts -> every target (and the host CPU) -> outputs compared -> one DeployResult.

Targets run concurrently, one thread each (run_targets.py); a device runs one benchmark at a time (the agent's
lock), and the host's timing stage never overlaps an emulated device's upload or timing (qemu uses this machine's
cores, see HostCpu). A target that fails is recorded with its error; the others go on. With `json_path` the partial
DeployResult is written after every stage (result_file.py), so nothing measured is lost if the host process dies.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np

from edgekit.convert.base import Artifact
from edgekit.convert.calibration import Labels
from edgekit.deploy.answers import attach_estimates, attach_profiles, routes
from edgekit.deploy.outputs import compare_all, onnx_reference
from edgekit.deploy.plan import (
    DeployOptions,
    Progress,
    check_before_work,
    device_inputs,
    plan_for,
)
from edgekit.deploy.provenance import git_revision, now, tool_versions
from edgekit.deploy.request import AgentArtifact, Settings
from edgekit.deploy.result_file import ResultFile
from edgekit.deploy.run_targets import run_targets
from edgekit.errors import ConversionError, Interrupted, OutputFileError, UsageError
from edgekit.recipe import Recipe
from edgekit.results import ArtifactInfo, DeployResult, TargetRun
from edgekit.run_files import run_folder
from edgekit.runtimes import host_only_artifact
from edgekit.same_model import record_same_models
from edgekit.target import HOST_COLUMN, Target, TransportKind, load_target

HOST = HOST_COLUMN  # this machine's column (edgekit.target.HOST_COLUMN: what `local` is stored as)


def host_target() -> Target:
    """This machine, measured by the same agent through the local transport, in edgekit's own python."""
    return Target(
        name=HOST,
        description="this machine (host CPU)",
        transport=TransportKind.LOCAL,
        python=sys.executable,
        runtimes=host_runtimes(),
    )


def host_runtimes() -> list[str]:
    """Every registry runtime importable in edgekit's own python (the host's fastest TFLite module first)."""
    from edgekit.runtimes import all_specs

    return [m for spec in all_specs() for m in spec.modules() if importlib.util.find_spec(m) is not None]


def _load_targets(targets: Sequence[Target | str], overrides: list[str], say: Progress) -> dict[str, Target]:
    """Each target by name (one named twice is measured once), the same --set for all: a local one among SSH
    targets leaves out its SSH fields (`--target mypi --target local --set user=pi` was refused, exit 2, for
    local), said once; when no SSH target shares them they are refused, as for a local target alone."""
    resolved: dict[str, Target] = {}
    skipped: list[tuple[str, list[str]]] = []
    for t in targets:
        said: list[str] = []
        target = (
            t
            if isinstance(t, Target)
            else load_target(t, overrides, shared=len(targets) > 1, note=said.append)
        )
        resolved.setdefault(target.name, target)
        if said:
            skipped.append((str(t), said))
    if skipped and all(t.transport is TransportKind.LOCAL for t in resolved.values()):
        load_target(skipped[0][0], overrides)  # for no SSH target: refused (TargetError naming the field)
    for _, said in skipped:
        for line in said:
            say(line)
    return resolved


def deploy(
    recipe: Recipe,
    targets: Sequence[Target | str],
    options: DeployOptions | None = None,
    progress: Progress | None = None,
    artifacts: Sequence[Artifact] | None = None,
) -> DeployResult:
    """Everything `edgekit deploy` does; `artifacts` skips conversion (already converted, e.g. by `convert`)."""
    opts = options or DeployOptions()
    say = progress or (lambda _m: None)
    resolved = _load_targets(targets, list(opts.target_overrides), say)
    for name, target in list(resolved.items()):
        if opts.host and target.is_this_host:  # measured twice, and its second copy labelled as a board
            del resolved[name]
            say(f"{name}: this machine, measured once as the host column (--no-host measures it as {name})")
    _check_something_runs(recipe, opts, list(resolved.values()))
    for target in resolved.values():  # a missing key file, a lab with no such place, an unbuilt emulated
        check_before_work(target)  # device...: said now, not after the conversions
    if sum(t.lab is not None for t in resolved.values()) > 1:  # one place between two lab targets: exit 2 now
        from edgekit.emu.device import check_distinct_places

        check_distinct_places(list(resolved.values()))
    settings = Settings.from_benchmark(
        recipe.benchmark,
        threads=opts.threads,
        repeat=opts.repeat,
        warmup=opts.warmup,
        number=opts.number,
        timeout_s=opts.timeout_s,
        samples=opts.samples or device_inputs(recipe),
    )
    if opts.host:
        resolved.setdefault(HOST, host_target())
    result = DeployResult(
        recipe=recipe.name,
        recipe_path=str(recipe.path),
        recipe_sha256=recipe.digest(),
        recipe_settings=recipe.settings(),
        git_revision=git_revision(recipe.path),
        task=recipe.task.value,
        started_at=now(),
        tool_versions=tool_versions(),
        benchmark=settings.as_dict(),
    )
    writer = ResultFile(opts.json_path, result)
    if artifacts is None:  # a board that is off is said now, not after minutes of conversions
        from edgekit.deploy.reach import say_unreachable

        say_unreachable(list(resolved.values()), say)
    artifacts = list(artifacts) if artifacts is not None else _convert(recipe, opts, say)
    result.artifacts = [artifact_info(a) for a in artifacts]
    record_same_models(result.artifacts)  # decided now, while the files exist (a stored run's may be pruned)
    writer.write()
    deployable = [AgentArtifact.from_artifact(a) for a in artifacts if a.files]
    run_id = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    # held while the run writes and reads it (no prune removes it); earlier runs' folders pruned by the rule
    with run_folder(run_id) as local_root:
        inputs, labels = _inputs(recipe, settings, local_root, say)
        plans = [plan_for(target, recipe, opts, settings, inputs, say) for target in resolved.values()]
        result.runs = run_targets(plans, deployable, run_id, local_root, say, writer, opts.stop)
        _check_cpus(result, resolved)
        try:
            say("compare: outputs vs the ONNX model and ARM vs host")
            reference = onnx_reference(recipe, np.load(inputs))
            compare_all(result, recipe, reference, labels, HOST)
            attach_estimates(result, {t.name: t for t in resolved.values()}, say)
            if opts.profile:
                attach_profiles(result, {t.name: t for t in resolved.values()}, say)
                writer.write()
            result.routes = routes(result)
        except Exception as exc:  # a bug after measuring must not cost the measurements: the CLI keeps them
            result.finished_at = now()
            writer.update()
            exc.result = result  # type: ignore[attr-defined]
            raise
        except KeyboardInterrupt:  # Ctrl-C while comparing or counting a thread split: measurements kept
            say("interrupted (Ctrl-C or SIGTERM) after measuring: keeping what was measured")
            _estimates_from_counts_made(result, resolved, say)
            for (
                run
            ) in result.runs:  # stored as interrupted (not 'ok: no'): its comparisons or estimates unfinished
                run.interrupted = True
            result.finished_at = now()
            writer.update()
            stop = Interrupted(
                "interrupted (Ctrl-C or SIGTERM) after measuring; what was measured is kept",
                where="edgekit deploy",
            )
            stop.result = result  # type: ignore[attr-defined]
            raise stop from None
    result.finished_at = now()
    result.ok = is_ok(result, [a.id for a in deployable])
    result.bad_input = only_bad_input(result, [a.id for a in deployable])
    try:
        writer.write()
    except OutputFileError as exc:  # --json failed (a full disk): the CLI still records what was measured
        writer.discard()
        exc.result = result  # type: ignore[attr-defined]
        raise
    return result


def _estimates_from_counts_made(result: DeployResult, targets: dict[str, Target], say: Progress) -> None:
    """A Ctrl-C after measuring (while comparing, say) dropped every board estimate of an emulated target: its
    counted measurements keep them, made from the counts already made (nothing more counted under qemu), as after a
    Ctrl-C during the run (run_targets). A second Ctrl-C leaves them out."""
    missing = {r.target for r in result.runs if not r.estimates}
    try:
        attach_estimates(result, {n: t for n, t in targets.items() if n in missing}, say, counting=False)
    except KeyboardInterrupt:
        say("interrupted again: the estimates of what was counted are left out")


def _check_cpus(result: DeployResult, targets: dict[str, Target]) -> None:
    """A device whose CPU is not its target's expected_cpu (a wrong host reached another board): kept among its
    run's caveats, which the CLI prints under the table."""
    from edgekit.deploy.expected_cpu import check_run

    for run in result.runs:
        if run.target in targets:
            check_run(run, targets[run.target])


def _check_something_runs(recipe: Recipe, opts: DeployOptions, targets: list[Target]) -> None:
    """Every format host-only (OpenVINO: a reference sent to no board) and a device among the targets: nothing
    would run there (with --no-host, nowhere). Bad input, said before any conversion: the device's run ended 'no
    route: nothing ran on this target (its error is above)' with no error above, FAILED, exit 1."""
    formats = list(opts.formats or recipe.formats)
    devices = [t.name for t in targets if not t.is_this_host]
    if not formats or not devices or not all(host_only_artifact(f.value) for f in formats):
        return
    names = ", ".join(f.value for f in formats)
    if opts.host or len(devices) < len(targets):
        raise UsageError(
            f"{names} run on the host only: nothing would run on {', '.join(devices)}",
            where=str(recipe.path),
            hint=f"add a format a board runs (`edgekit formats --target {devices[0]}`), or leave "
            f"{', '.join(devices)} out (`--target local` measures on the host)",
        )
    raise UsageError(
        f"{names} run on the host only, and --no-host leaves the host out: nothing would run",
        where=str(recipe.path),
        hint="drop --no-host (the host measures them), or add a format a board runs (`edgekit formats`)",
    )


def _convert(recipe: Recipe, opts: DeployOptions, say: Progress) -> list[Artifact]:
    from edgekit.convert.pipeline import convert_recipe

    artifacts = convert_recipe(recipe, opts.formats, keep_going=True, progress=lambda m: say(f"convert: {m}"))
    broken = [a for a in artifacts if not a.files]
    if broken and not opts.keep_going:
        raise _not_converted(recipe, broken, [a for a in artifacts if a.files and a.status != "ok"])
    return artifacts


def _not_converted(recipe: Recipe, broken: list[Artifact], checked: list[Artifact]) -> ConversionError:
    """Formats that did not convert, one line each (its message; the hints once, after): each format's hint was
    glued to the next format's error on one line. `checked`: formats that converted but failed their check here
    (a runtime this host lacks, a missed gate), listed too: --keep-going deploys them."""
    from edgekit.convert.failures import HINT

    lines, hints = [], []
    for a, note in [(a, "") for a in broken] + [
        (a, " (converted: --keep-going deploys it)") for a in checked
    ]:
        text, _, hint = (a.error or "failed").partition(HINT)
        lines.append(f"{a.format.value}: {text.strip()}{note}")
        hints += [hint.strip()] if hint.strip() else []
    summary = lines[0] if len(lines) == 1 else f"{len(lines)} formats failed:\n  " + "\n  ".join(lines)
    hints.append("fix the conversion, or pass --keep-going to deploy the formats that converted")
    return ConversionError(summary, where=str(recipe.path), hint="; ".join(dict.fromkeys(hints)))


# files that describe a model, not the model (ncnn's, with speed-plan counts)
SIDECAR_SUFFIXES = (".io.json",)


def artifact_info(art: Artifact) -> ArtifactInfo:
    digest, model = hashlib.sha256(), hashlib.sha256()
    for f in art.files:
        one = hashlib.sha256(f.read_bytes()).digest()
        digest.update(one)
        if not f.name.endswith(SIDECAR_SUFFIXES):
            model.update(one)
    gates = art.fidelity.get("gates", {})
    return ArtifactInfo(
        id=art.format.value,
        format=art.format.value,
        files=[str(f) for f in art.files],
        sha256=digest.hexdigest(),
        model_sha256=model.hexdigest(),
        size_bytes=art.size_bytes,
        cached=art.cached,
        convert_s=art.convert_s,
        fidelity=art.fidelity,
        gates_passed=bool(art.files) and bool(gates.get("passed", False)),
        status="ok" if art.status == "ok" else "failed",
        error=art.error,
    )


def _inputs(recipe: Recipe, settings: Settings, folder: Path, say: Progress) -> tuple[Path, Labels | None]:
    from edgekit.convert.calibration import evaluation_inputs

    inputs, labels = evaluation_inputs(recipe)
    if settings.samples is not None and settings.samples > len(inputs):
        say(
            f"{settings.samples} evaluation inputs asked for (--samples or evaluation.device_inputs); the evaluation "
            f"data holds {len(inputs)}: using all {len(inputs)}"
        )
    if settings.samples is not None:
        inputs = inputs[: settings.samples]
        labels = labels[: settings.samples] if labels is not None else None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "inputs.npy"
    np.save(path, np.ascontiguousarray(inputs, dtype=np.float32))
    return path, labels


def only_bad_input(result: DeployResult, expected: list[str]) -> bool:
    """Whether the deploy failed for bad input alone: some target failed on its input (a `python` the device does
    not have, a work_dir that is no path, a runtime its python lacks: the run's bad_input) and the rest is ok,
    leaving out the runs skipped because of them. A target whose python lacks a runtime measured the other
    artifacts: those are judged as any (only its `skipped` ones are left out). A missed gate or a failed
    measurement elsewhere is a failed run (exit 1) whatever else."""
    if result.ok or not any(r.bad_input for r in result.runs):
        return False
    rest = [r for r in result.runs if not (r.bad_input or r.skipped)]
    if not is_ok(result.model_copy(update={"runs": rest}), expected):
        return False
    for run in result.runs:
        left_out = (
            {m.artifact for m in run.agent.measurements if m.status == "skipped"} if run.agent else set()
        )
        if (
            run.bad_input
            and left_out
            and not run_is_ok(result, run, [a for a in expected if a not in left_out])
        ):
            return False
    return True


def is_ok(result: DeployResult, expected: list[str]) -> bool:
    """Every artifact converted and met its gates (on the host and on every target), every target ran
    every artifact at every thread count."""
    if not result.artifacts or not all(a.status == "ok" and a.gates_passed for a in result.artifacts):
        return False
    return all(run.status == "ok" and run_is_ok(result, run, expected) for run in result.runs)


def run_is_ok(result: DeployResult, run: TargetRun, expected: list[str]) -> bool:
    """The target ran each of `expected` it runs at every thread count, and each met its gates there."""
    if run.agent is None:
        return False
    threads = (run.benchmark or result.benchmark).get("threads", [1])
    done = {(m.artifact, m.threads) for m in run.agent.measurements if m.status == "ok"}
    runs_here = [a for a in expected if run.target == HOST or not host_only_artifact(a)]
    if any((a, t) not in done for a in runs_here for t in threads):
        return False
    gated = {c.artifact: c.gates_passed for c in run.comparisons if c.reference == "onnx"}
    return all(gated.get(a) is True for a in runs_here)
