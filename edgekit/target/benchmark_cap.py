"""A target's `benchmark_cap:` block (upper bounds on a recipe's benchmark settings), and the rule for thread
counts it shares with a recipe's `benchmark.threads` (recipe/schema.py imports it from here: target/ is
configuration and imports no recipe code)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_THREADS = 256  # more than any board's cores: --threads 100000 had the runtime start that many and hang


def thread_counts(value: tuple[int, ...]) -> tuple[int, ...]:
    """Thread counts to measure at, each once: a non-empty list from 1 to MAX_THREADS (ValueError, else). Here,
    not in recipe/, for a benchmark cap's too: target/ is configuration and imports no recipe code."""
    if not value or any(t <= 0 or t > MAX_THREADS for t in value):
        raise ValueError(f"threads must be a non-empty list of integers from 1 to {MAX_THREADS}, e.g. [1, 4]")
    return tuple(dict.fromkeys(value))  # [1, 1, 4] measures 1 thread once


class BenchmarkCap(BaseModel):
    """Upper bounds a target puts on a recipe's benchmark settings (command-line flags still win).

    Emulated devices run tens of times slower than the board, and their wall times are not device latency
    anyway: a recipe's full timing plan (say repeat 20 at 1 and 4 threads on 50 images) would take hours.
    """

    model_config = ConfigDict(extra="forbid")

    threads: tuple[int, ...] | None = None
    repeat: int | None = Field(None, gt=0)
    warmup: int | None = Field(None, ge=0)
    samples: int | None = Field(None, gt=0)

    @field_validator("threads")
    @classmethod
    def _threads(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        """As a recipe's `benchmark.threads`: [0] or [-3] failed only after the device run, [100000] started that
        many threads, [] measured with none said."""
        return None if value is None else thread_counts(value)
