"""The training loop of the digits classifier (edgekit.zoo.digits), run by edgekit.zoo.train.

AdamW with a one-cycle schedule and +-1 px shifts; batches drawn by a seeded generator, so the result is a
function of the config. `data.max_train` trains on a stratified-enough random subset (tests use it for speed).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit.fidelity.metrics import top1
from edgekit.zoo import digits
from edgekit.zoo.train_config import Log, TrainConfig

DEFAULT = TrainConfig(
    model="digits",
    seed=0,
    epochs=15,
    batch_size=64,
    lr=3e-3,
    weight_decay=5e-4,
    model_args={"widths": list(digits.DEFAULT_WIDTHS)},
)


def loop(model: Any, config: TrainConfig, log: Log) -> dict[str, float]:
    import torch

    x, y = digits.train_data()
    limit = int(config.data.get("max_train", len(x)))
    if limit < len(x):
        x, y = digits.calibration(limit, config.seed)
    xt, yt = torch.from_numpy(np.array(x)), torch.from_numpy(np.array(y))
    gen = torch.Generator().manual_seed(config.seed)
    steps = config.epochs * -(-len(xt) // config.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps)
    loss_fn = torch.nn.CrossEntropyLoss()
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(xt), config.batch_size):
            idx = order[i : i + config.batch_size]
            batch = digits.shift_augment(xt[idx], gen)
            loss = loss_fn(model(batch), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        log(f"epoch {epoch + 1}/{config.epochs} loss {total / len(xt):.4f}")
    return evaluate(model)


def evaluate(model: Any) -> dict[str, float]:
    """Top-1 on the whole held-out test split."""
    import torch

    x, y = digits.test_split()
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    return {"top1": top1(logits, y), "test_images": float(len(y))}
