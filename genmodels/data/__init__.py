"""Data by name -> host batches. What most code needs is re-exported here as `data.X`:

    sources.py     which datasets exist (bundled, toy, TFDS images, text, the user's images), their
                   shape, splits and raw values; bundled.py and toy.py define the offline
                   datasets, originals.py prepares full-size TFDS datasets from their original
                   files, local.py reads image folders and .npz arrays
    preprocess.py  raw values -> model inputs (scale, binarize, dequantize) and the record of it
    pipeline.py    the seeded training stream and whole splits for evaluation
"""

from genmodels.data.pipeline import (check_batch_fits, check_batch_size, load_split, map_batches,
                                     padded_batches, train_iterator)
from genmodels.data.preprocess import from_unit, Preprocessing, preprocessing, to_unit, value_range
from genmodels.data.sources import (DatasetInfo, dataset_info, decode_text, identity, is_text,
                                    is_toy, known_datasets, toy_distribution, vocabulary)

__all__ = ['check_batch_fits', 'check_batch_size', 'dataset_info', 'DatasetInfo', 'decode_text',
           'from_unit', 'identity', 'is_text', 'is_toy', 'known_datasets', 'load_split', 'map_batches',
           'padded_batches', 'Preprocessing', 'preprocessing', 'to_unit', 'toy_distribution',
           'train_iterator', 'value_range', 'vocabulary']
