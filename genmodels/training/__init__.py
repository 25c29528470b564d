"""The parts of the generic training loop (genmodels/trainer.py) that families and evaluation also
use: the train state, optimizers, mixed precision and seed lanes (train_state), checkpoints
(checkpoint), the device mesh and multi-host start-up (parallel), preemption signals (preemption),
and metric logs with TensorBoard (metric_writer)."""
