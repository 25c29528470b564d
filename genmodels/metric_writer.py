"""Training logs: one JSON object per logged step in metrics.jsonl, and TensorBoard event files.

Event files are written with tensorboardX, so neither writing nor `tensorboard --logdir` needs
TensorFlow.
"""

from __future__ import annotations

import json
import os
import time

import tensorboardX


class MetricWriter:
    def __init__(self, workdir: str, enabled: bool = True):
        self.enabled = enabled
        if enabled:
            self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a')
            self._tb = tensorboardX.SummaryWriter(logdir=workdir, flush_secs=30)

    def write(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        record = {'step': step, 'time': time.time(), **scalars}
        self._jsonl.write(json.dumps(record) + '\n')
        self._jsonl.flush()
        for name, value in scalars.items():
            self._tb.add_scalar(name, value, step)

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            self._tb.close()
