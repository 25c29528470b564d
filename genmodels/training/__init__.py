"""The parts of the generic training loop (genmodels/trainer.py) that families and evaluation also
use: the train state, optimizers, mixed precision and seed lanes (train_state), checkpoints
and preemption (checkpoint), the device mesh and multi-host start-up (parallel), and the run
directory: its config check, metric logs, TensorBoard and progress display (workdir)."""
