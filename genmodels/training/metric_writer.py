"""Training logs: one JSON object per logged step in metrics.jsonl, and TensorBoard event files
(scalars, and the progress figures as images).

Event files are written with tensorboardX, so neither writing nor `tensorboard --logdir` needs
TensorFlow.
"""

from __future__ import annotations

import json
import os
import time

import matplotlib.image
import tensorboardX
from absl import logging


class MetricWriter:
    """Appends to a run's logs; on resume from `start_step`, first drops lines logged after it
    (a killed run logs steps past its last checkpoint, and the resumed run logs them again)."""

    def __init__(self, workdir: str, start_step: int = 0, enabled: bool = True):
        self.enabled = enabled
        if enabled:
            path = os.path.join(workdir, 'metrics.jsonl')
            _truncate_after(path, start_step)
            self._jsonl = open(path, 'a')
            self._tb = tensorboardX.SummaryWriter(logdir=workdir, flush_secs=30)

    def write(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        record = {'step': step, 'time': time.time(), **scalars}
        self._jsonl.write(json.dumps(record) + '\n')
        self._jsonl.flush()
        for name, value in scalars.items():
            self._tb.add_scalar(name, value, step)

    def write_image(self, step: int, tag: str, path: str) -> None:
        """A saved figure (PNG) as a TensorBoard image under `tag`."""
        if self.enabled:
            pixels = matplotlib.image.imread(path)  # float [H, W, 3 or 4] in [0, 1]
            self._tb.add_image(tag, pixels[..., :3], step, dataformats='HWC')

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            self._tb.close()


def _truncate_after(path: str, step: int) -> None:
    """Keeps the lines of steps <= `step`. A torn last line (a crash mid-write) is dropped with a
    warning; an unreadable line elsewhere is an error naming the file and line."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = [line for line in f if line.strip()]
    kept = []
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                logging.warning('%s: dropped its torn last line (a crash while writing it).', path)
                break
            raise ValueError(f'{path}, line {i + 1}, is not JSON; fix or remove that line, '
                             f'then rerun to resume.') from None
        if record['step'] <= step:
            kept.append(line if line.endswith('\n') else line + '\n')
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.writelines(kept)
    os.replace(tmp, path)
