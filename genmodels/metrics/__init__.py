"""Evaluation metrics: FID/KID/IS/precision-recall, the Inception feature extractor, likelihood units.

The InceptionV3 extractor (genmodels.metrics.inception, .inception_weights) is imported on use, so
importing the metrics does not build the network.
"""
from genmodels.metrics.frechet import fid_from_features, frechet_distance, gaussian_stats
from genmodels.metrics.inception_score import inception_score
from genmodels.metrics.kid import kernel_inception_distance
from genmodels.metrics.precision_recall import precision_recall
from genmodels.metrics.reference_stats import (ReferenceStats, load_reference_stats,
                                               save_reference_stats)
from genmodels.metrics.units import (Preprocessing, bits_per_dim, discrete_nll_nats,
                                     likelihood_record, nats_per_example)

__all__ = [
    'frechet_distance', 'fid_from_features', 'gaussian_stats',
    'kernel_inception_distance', 'inception_score', 'precision_recall',
    'ReferenceStats', 'save_reference_stats', 'load_reference_stats',
    'Preprocessing', 'bits_per_dim', 'nats_per_example', 'discrete_nll_nats', 'likelihood_record',
]
