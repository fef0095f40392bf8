"""What one target's agent runs leave in its TargetRun: each invocation's result folded in (facts before from the
first, after from the last), and for what a failure left unmeasured, a failed row per missing thread count with
why; which (artifact, thread count) pairs are still missing, and what a restarted agent is asked for.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgekit.agent.contract import ErrorCode
from edgekit.deploy.request import AgentArtifact, Settings, runtime_for
from edgekit.results import AgentResult, Measurement, TargetRun
from edgekit.target import Target


class RunRecorder:
    """The recording half of AgentRunner (deploy/agent_run.py), which sets these attributes: `run` is the session's
    TargetRun, `local_dir` holds each invocation's request-<n>.json and the merged result.json."""

    run: TargetRun
    settings: Settings
    local_dir: Path
    invocations: int
    on_update: Callable[[TargetRun], None]

    @property
    def target(self) -> Target:
        """The target whose run this is: AgentRunner's (a lab target's, the place it got)."""
        raise NotImplementedError

    def record_not_run(
        self, arts: list[AgentArtifact], why: str, code: ErrorCode = ErrorCode.NOT_RUN
    ) -> None:
        """Every artifact a failure left unmeasured, recorded as not run with the reason (when the agent ran;
        before it, the target's error says why nothing ran)."""
        if self.run.agent is None:
            self.run.error = f"{self.run.error}; not run: {', '.join(a.id for a in arts)}"
        for art in self.incomplete(arts):
            self.record_failed(art, f"not run: {why}", code)
        self.on_update(self.run)

    def still_to_measure(self, arts: list[AgentArtifact]) -> list[AgentArtifact]:
        """What a restarted agent measures: every artifact missing a thread count, each asking for the thread
        counts it misses (its `threads`; None when it misses them all). One measured at 1 thread before the
        agent died in the cooldown is measured at 2 threads, not dropped."""
        done = {(m.artifact, m.threads) for m in self.run.agent.measurements} if self.run.agent else set()
        rest = []
        for art in self.incomplete(arts):
            missing = tuple(t for t in self.settings.threads if (art.id, t) not in done)
            rest.append(replace(art, threads=None if missing == tuple(self.settings.threads) else missing))
        return rest

    def incomplete(self, arts: list[AgentArtifact]) -> list[AgentArtifact]:
        """The artifacts missing a measurement at some thread count (what a stopped run records as not run: one
        measured at 1 thread but stopped before 2 lost its 2-thread row)."""
        done = {(m.artifact, m.threads) for m in self.run.agent.measurements} if self.run.agent else set()
        return [a for a in arts if any((a.id, t) not in done for t in self.settings.threads)]

    def record_failed(self, art: AgentArtifact, error: str, code: ErrorCode) -> None:
        """A failed Measurement for every thread count of `art` not measured yet, with why (`code`)."""
        if self.run.agent is None:
            return
        have = {(m.artifact, m.threads) for m in self.run.agent.measurements}
        runtime = runtime_for(art.format, self.target.runtimes)
        for threads in self.settings.threads:
            if (art.id, threads) not in have:
                self.run.agent.measurements.append(
                    Measurement(
                        artifact=art.id,
                        format=art.format.value,
                        runtime=runtime,
                        threads=threads,
                        status="failed",
                        error=error,
                        error_code=code,
                    )
                )

    def merge(self, part: AgentResult | None) -> None:
        """Fold one invocation's result into the target's: facts before from the first, after from the last."""
        if part is None:
            return
        agent = self.run.agent
        if part.facts_before is not None and part.facts_before.emulated:
            # the device says it is emulated (a lab place or a board file pointing at one): not board times
            self.run.emulated = True
            self.run.emulated_as = self.run.emulated_as or "board"  # no `emulated:` block: it cannot count
        if agent is None:
            self.run.agent = part.model_copy(deep=True)
            self.run.agent.request = {"requests": self._requests()}
        else:
            agent.measurements.extend(part.measurements)
            agent.facts_after = part.facts_after or agent.facts_after
            agent.finished_at = part.finished_at
            agent.in_progress = part.in_progress
            agent.request = {"requests": self._requests()}
        (self.local_dir / "result.json").write_text(self.run.agent.model_dump_json(indent=1))  # type: ignore[union-attr]
        self.on_update(self.run)

    def _requests(self) -> list[dict[str, Any]]:
        files = [self.local_dir / f"request-{n}.json" for n in range(self.invocations)]
        return [json.loads(p.read_text()) for p in files if p.is_file()]
