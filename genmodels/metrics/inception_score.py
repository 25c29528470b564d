"""Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))), mean and std over splits."""
import numpy as np
from scipy.special import xlogy


def inception_score(probs, splits: int = 10) -> tuple[float, float]:
    """probs: [N, K] class probabilities p(y|x), e.g. softmax of the Inception logits.

    Salimans et al.'s reference code takes the softmax of the 1008 bias-free logits
    (InceptionOutputs.logits_unbiased); use those to reproduce published numbers. The N samples are
    cut into `splits` consecutive chunks of N // splits (the remainder is dropped, as there).
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f'probs must be [N, K], got shape {p.shape}')
    if np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError('probs rows must be non-negative and sum to 1; '
                         'pass softmax(logits), not logits')
    n = len(p) // splits
    if n < 1:
        raise ValueError(f'{len(p)} samples cannot be cut into {splits} splits')
    scores = []
    for part in np.split(p[:n * splits], splits):
        p_y = part.mean(axis=0, keepdims=True)
        # KL(p(y|x) || p(y)) = sum_y p(y|x) (log p(y|x) - log p(y)); 0 log 0 = 0.
        kl = (xlogy(part, part) - xlogy(part, p_y)).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))
