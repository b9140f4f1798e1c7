"""The loop around a learner: progress, logging, NaN checks, checkpoints of any named state,
exact resume, torchrun / DDP.

    Trainer(TrainConfig(...), run_dir).fit(learner, data, resume=False)

``elbokit.train.learner`` is the seam (what is trained owns its step and optimizers);
``loop`` the trainer; ``checkpoint`` the files; ``settings`` per-machine precision and threads;
``writers`` the progress bar and metrics.jsonl; ``distributed`` torchrun.
"""

from elbokit.train.checkpoint import CheckpointError, Snapshot
from elbokit.train.learner import (
    AdamConfig,
    Evaluation,
    Learner,
    ObjectiveLearner,
    StepContext,
    TrainingDiverged,
    make_adam,
)
from elbokit.train.loop import LoopConfig, StreamTrainConfig, TrainConfig, Trainer, step_seed

__all__ = [
    "AdamConfig",
    "CheckpointError",
    "Evaluation",
    "Learner",
    "LoopConfig",
    "ObjectiveLearner",
    "Snapshot",
    "StepContext",
    "StreamTrainConfig",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "make_adam",
    "step_seed",
]
