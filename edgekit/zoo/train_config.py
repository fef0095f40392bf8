"""What a training run is: its configuration (everything that decides the weights, and so their cache key) and
the log callback a training loop reports through. Shared by edgekit.zoo.train (which runs and caches) and
the loops themselves (digits_train, shapes_train), which train.py dispatches to.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

TRAINER_VERSION = 1  # bump when a training loop changes what a config produces
Log = Callable[[str], None]


class TrainConfig(BaseModel):
    """Everything that decides the trained weights (and so the cache key), the thread count included; nothing
    about the machine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str  # a key of TRAINERS
    seed: int = 0
    epochs: int = Field(15, gt=0)
    batch_size: int = Field(64, gt=0)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    model_args: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)  # trainer-specific data options (subset, canvas, ...)
    # torch's intra-op threads: another count sums in another order and gives other weights (digits at 2 threads
    # differs from 1 by up to 0.155), so it is the run's, never the machine load's; 1 is reproducible anywhere
    threads: int = Field(1, gt=0)

    def digest(self) -> str:
        fields = self.model_dump(mode="json")
        if (
            fields["threads"] == 1
        ):  # the digest of a 1-thread run is the one written before threads was a field
            del fields[
                "threads"
            ]  # (the shipped weights' config_sha256 were trained at 1 thread and stay valid)
        text = json.dumps({"v": TRAINER_VERSION, **fields}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()
