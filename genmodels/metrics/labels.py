"""The labels a conditional model is given, and how well generated images carry the class they
were asked for, read by a classifier.

    num_classes           the classes a conditional model is given (0: unconditional)
    balanced              class-balanced labels i mod K: a conditional sampler's default

    label_accuracy        P(classifier's digit = the label G was given): conditional GANs.
    code_class_agreement  the fraction of samples whose categorical code maps to the classifier's
                          digit under the best one-to-one map from codes to classes (Hungarian
                          matching of the code-class count table): InfoGAN, whose codes are
                          unsupervised and so name the digits in an arbitrary order.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import scipy.optimize

from genmodels import data


def num_classes(data_config: ml_collections.ConfigDict, model_config: ml_collections.ConfigDict
                ) -> int:
    """The dataset's number of classes for a conditional model (model.conditional); 0 if not."""
    return data.dataset_info(data_config).num_classes if model_config.conditional else 0


def balanced(num: int, classes: int, xp=jnp) -> jax.Array | np.ndarray:
    """Class-balanced labels int [num]: example i asks for class i mod `classes` (xp: jnp or np)."""
    return xp.arange(num) % classes


def label_accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    """predicted, labels: int [N] -> the fraction equal."""
    return float(np.mean(np.asarray(predicted) == np.asarray(labels)))


def code_class_agreement(codes: np.ndarray, predicted: np.ndarray, num_codes: int,
                         num_classes: int) -> tuple[float, np.ndarray]:
    """codes int [N] in [0, num_codes), predicted int [N] in [0, num_classes) -> (agreement, the
    class matched to each code, int [num_codes]; -1 for a code left unmatched when num_codes >
    num_classes)."""
    counts = np.zeros((num_codes, num_classes), np.int64)
    np.add.at(counts, (np.asarray(codes), np.asarray(predicted)), 1)
    rows, cols = scipy.optimize.linear_sum_assignment(counts, maximize=True)
    matching = np.full(num_codes, -1)
    matching[rows] = cols
    return float(counts[rows, cols].sum() / len(codes)), matching
