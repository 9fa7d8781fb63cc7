"""Learning from the archive: scikit-learn-ready arrays, a baseline classifier and its report."""

from batglitch.learn.dataset import TrainingSet, training_set

__all__ = ["TrainingSet", "training_set"]
