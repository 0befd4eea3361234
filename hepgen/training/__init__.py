"""One training loop for every hepgen model: AdamW, schedule, clipping, early stopping, resume.

:func:`train` minimises the weighted mean of a per-event loss over numpy arrays.  It knows
nothing of flows, ROOT, configs or preprocessing: a model is a :class:`torch.nn.Module` and a
``loss_fn(module, batch) -> losses`` of shape ``(batch,)``, or an :class:`Objective` for
models trained with several optimizers (adversarial training).  Everything else is here, once:
device choice, seeded shuffling, AdamW with a learning-rate schedule, gradient clipping, a
NaN/inf guard, early stopping, checkpoints with exact resume, the choice of the final weights
by a physics metric, progress and one log line per epoch.  The package's modules, from the
bottom (its settings are :class:`hepgen.settings.TrainingSettings`): :mod:`~hepgen.training.data` (event weights,
batches), :mod:`~hepgen.training.objective`, :mod:`~hepgen.training.schedule`,
:mod:`~hepgen.training.checkpoint` (file format), :mod:`~hepgen.training.evaluation`,
:mod:`~hepgen.training.run` (one run's state, NaN guard, early stopping, selection) and
:mod:`~hepgen.training.loop` (:func:`train`).
"""

from hepgen.settings.training import (
    AUTO_BATCH_RANGE,
    AUTO_EPOCH_RANGE,
    AUTO_FIELDS,
    AUTO_METRIC_EVERY_MAX,
    AUTO_METRIC_SHARE,
    AUTO_ROWS_PER_BATCH,
    AUTO_STEPS,
    TrainingSettings,
)
from hepgen.training.checkpoint import (
    CHECKPOINT_FORMAT_VERSION,
    RESUME_FIXED_SETTINGS,
    canonical_safetensors,
    save_safetensors,
)
from hepgen.training.errors import TrainingError
from hepgen.training.evaluation import EVAL_BATCH_SIZE
from hepgen.training.loop import CHECKPOINT_SECONDS, train
from hepgen.training.objective import LikelihoodObjective, Objective, StepContext
from hepgen.training.result import TrainingResult
from hepgen.training.schedule import PLATEAU_FACTOR, PLATEAU_MIN_SCALE

__all__ = [
    "AUTO_BATCH_RANGE",
    "AUTO_EPOCH_RANGE",
    "AUTO_FIELDS",
    "AUTO_METRIC_EVERY_MAX",
    "AUTO_METRIC_SHARE",
    "AUTO_ROWS_PER_BATCH",
    "AUTO_STEPS",
    "CHECKPOINT_FORMAT_VERSION",
    "CHECKPOINT_SECONDS",
    "EVAL_BATCH_SIZE",
    "PLATEAU_FACTOR",
    "PLATEAU_MIN_SCALE",
    "RESUME_FIXED_SETTINGS",
    "LikelihoodObjective",
    "Objective",
    "StepContext",
    "TrainingError",
    "TrainingResult",
    "TrainingSettings",
    "canonical_safetensors",
    "save_safetensors",
    "train",
]
