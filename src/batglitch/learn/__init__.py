"""Learning from the archive: a baseline classifier and its report, on the reader's arrays."""

from batglitch.store.reader import TrainingSet, training_set

__all__ = ["TrainingSet", "training_set"]
