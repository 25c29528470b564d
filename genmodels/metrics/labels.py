"""How well generated images carry the class they were asked for, read by a classifier.

    label_accuracy        P(classifier's digit = the label G was given): conditional GANs.
    code_class_agreement  the fraction of samples whose categorical code maps to the classifier's
                          digit under the best one-to-one map from codes to classes (Hungarian
                          matching of the code-class count table): InfoGAN, whose codes are
                          unsupervised and so name the digits in an arbitrary order.
"""

import numpy as np
import scipy.optimize


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
