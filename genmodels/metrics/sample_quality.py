"""Sample quality of a generative model in a feature space: FID, KID, IS, precision and recall.

Feature extractors: MNIST digits and Fashion-MNIST use the classifier shipped for them
(classifiers.py); any other dataset uses InceptionV3 when given pytorch-fid's weights file, and is otherwise skipped
with a note in eval.json (`sample_metrics_note`), not an error.

The real images are always read in [0, 1] without binarisation or dequantisation, whatever the
model was trained on, so every family on a dataset is measured against the same reference; the
generated images are mapped from the data's value range to [0, 1]. Reference statistics (and the
eval split's features, which KID and precision/recall need) are cached as .npz files whose
metadata (dataset, split, number of images, extractor and its sha256) is checked on reuse; a
mismatch recomputes them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
import zipfile
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from genmodels import data, metrics
from genmodels.metrics import classifiers, labels

PR_NEIGHBOURS = 3  # k of the k-NN balls (Kynkaanniemi et al. 2019 use k = 3)
IS_SPLITS = 10


@dataclasses.dataclass(frozen=True)
class Extractor:
    name: str    # recorded in the reference statistics' metadata
    key: str     # the FID's key in eval.json is fid_<key>
    sha256: str  # of the weights file
    fn: Callable[[jax.Array], tuple[jax.Array, jax.Array]]  # [B, H, W, C] in [0,1] -> [B,F], [B,K]


def has_classifier(dataset: str) -> bool:
    """Whether a classifier ships for `dataset` (its features, and label accuracy)."""
    return classifiers.for_dataset(dataset) is not None


def classifier_extractor(dataset: str) -> Extractor:
    """The features and softmax of the classifier shipped for `dataset`."""
    shipped = classifiers.for_dataset(dataset)
    if shipped is None:
        raise ValueError(f'no classifier ships for {dataset}; the shipped ones read '
                         f'{", ".join(d for s in classifiers.SHIPPED.values() for d in s.datasets)}.')
    return Extractor(shipped.extractor_name, shipped.key, shipped.sha256,
                     classifiers.load_classifier(shipped.path, shipped.sha256))


def inception_extractor(weights_path: str) -> Extractor:
    """pool3 features and softmax(logits_unbiased), as Salimans et al.'s IS code uses."""
    from genmodels.metrics import inception, inception_weights

    variables = inception_weights.load_inception_variables(weights_path)

    @jax.jit
    def apply(v, images):
        out = inception.InceptionV3().apply(v, inception.preprocess(images))
        return out.pool3, jax.nn.softmax(out.logits_unbiased)

    return Extractor(inception_weights.EXTRACTOR_NAME, 'inception',
                     inception_weights.PT_INCEPTION_SHA256, functools.partial(apply, variables))


def choose_extractor(dataset: str, inception_weights: str | None) -> Extractor | str:
    """The extractor for `dataset`, or a sentence saying why there is none."""
    if data.is_toy(dataset):
        return (f'sample metrics skipped: {dataset} holds points, not images; its fit is measured '
                'by kl_estimate_nats against the exact density.')
    if data.is_text(dataset):
        return (f'sample metrics skipped: {dataset} is text; its fit is measured by the test '
                'NLL and perplexity per character.')
    if has_classifier(dataset):
        return classifier_extractor(dataset)
    if inception_weights:
        return inception_extractor(inception_weights)
    return (f'sample metrics skipped: {dataset} has no shipped classifier, and FID/KID/IS/'
            'precision/recall on it need InceptionV3; pass eval.py --inception_weights PATH '
            "(pytorch-fid's pt_inception-2015-12-05-6726825d.pth) to compute them.")


def to_unit(config: ml_collections.ConfigDict, images: jax.Array) -> jax.Array:
    """Images in the data's value range -> [0, 1], clipped."""
    return jnp.clip(data.to_unit(config.data, images), 0.0, 1.0)


def features(extractor: Extractor, images: np.ndarray, batch_size: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """(features [N, F], probs [N, K]) of images [N, H, W, C] in [0, 1], in fixed-size batches so
    the extractor compiles once."""
    return data.map_batches(lambda b: extractor.fn(b['image']), {'image': images}, batch_size)


# ------------------------------------------------------------------------------------------------
# Reference statistics of the real data, cached

def _save_features(path: str, feats: np.ndarray, meta: dict) -> None:
    tmp = f'{path}.tmp.npz'  # write then rename: no half-written file on failure
    np.savez(tmp, features=feats.astype(np.float32), metadata=np.array(json.dumps(meta)))
    os.replace(tmp, path)


def _load_cached(stats_path: str, feats_path: str | None, meta: dict):
    """(stats, features or None) from the cache, or None if absent or made differently."""
    if not os.path.exists(stats_path) or (feats_path and not os.path.exists(feats_path)):
        return None
    try:
        stats = metrics.load_reference_stats(stats_path, **meta)
        if feats_path is None:
            return stats, None
        with np.load(feats_path, allow_pickle=False) as f:
            found, feats = json.loads(str(f['metadata'])), f['features']
        if found != meta or len(feats) != meta['num_images']:
            raise ValueError(f'{feats_path}: metadata {found} differs from {meta}')
        return stats, feats
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        logging.warning('recomputing cached reference statistics: %s', e)
        return None


def reference(extractor: Extractor, data_config: ml_collections.ConfigDict, split: str,
              num_images: int, cache_dir: str | None, batch_size: int, keep_features: bool
              ) -> tuple[metrics.ReferenceStats, np.ndarray | None]:
    """Statistics (and, if `keep_features`, the features) of the first `num_images` real images of
    `split`, read from `cache_dir` when they were made the same way, else computed and cached."""
    meta = {'dataset': data_config.name, 'split': split, 'num_images': int(num_images),
            'extractor': extractor.name, 'extractor_sha256': extractor.sha256}
    stem = f'{data_config.name}-{split}-{num_images}-{extractor.name}'
    stats_path = os.path.join(cache_dir, f'{stem}.npz') if cache_dir else None
    feats_path = os.path.join(cache_dir, f'{stem}-features.npz') if cache_dir else None
    if stats_path:
        cached = _load_cached(stats_path, feats_path if keep_features else None, meta)
        if cached is not None:
            return cached
    raw = ml_collections.ConfigDict(dict(data_config.to_dict(), scale='01', binarize=False,
                                         dequantize=False))
    images = data.load_split(raw, split, num_images)['image']
    feats, _ = features(extractor, images, batch_size)
    mu, sigma = metrics.gaussian_stats(feats)
    stats = metrics.ReferenceStats(mu=mu, sigma=sigma, **meta)
    if stats_path and jax.process_index() == 0:
        os.makedirs(cache_dir, exist_ok=True)
        metrics.save_reference_stats(stats_path, stats)
        if keep_features:
            _save_features(feats_path, feats, meta)
    return stats, (feats if keep_features else None)


# ------------------------------------------------------------------------------------------------
# The metrics

def sample_metrics(fake_features: np.ndarray, fake_probs: np.ndarray, real_features: np.ndarray,
                   real_stats: metrics.ReferenceStats) -> dict[str, float]:
    """FID, KID, IS and precision/recall of generated features [M, F] and softmax [M, K] against
    real features [N, F] (whose Gaussian statistics are `real_stats`)."""
    fid = metrics.frechet_distance(*metrics.gaussian_stats(fake_features), real_stats.mu,
                                   real_stats.sigma)                    # Heusel et al. 2017, Eq. 6
    kid_mean, kid_std = metrics.kernel_inception_distance(fake_features, real_features)  # Binkowski
    is_mean, is_std = metrics.inception_score(fake_probs, IS_SPLITS)  # Salimans et al.
    # Equal set sizes, as Kynkaanniemi et al. (2019) use: the k-NN radii shrink as a set grows.
    n = min(len(real_features), len(fake_features))
    precision, recall = metrics.precision_recall(real_features[:n], fake_features[:n],
                                                          PR_NEIGHBOURS)
    return {'fid': fid, 'kid': kid_mean, 'kid_std': kid_std, 'inception_score': is_mean,
            'inception_score_std': is_std, 'precision': precision, 'recall': recall}


def check_num_samples(num: int) -> None:
    if num < max(IS_SPLITS, PR_NEIGHBOURS + 1):
        raise ValueError(f'eval.num_samples={num} is too few for the sample metrics (the IS needs '
                         f'{IS_SPLITS} splits); use at least {IS_SPLITS}.')


def evaluate_samples(config: ml_collections.ConfigDict,
                     sample_batch: Callable[[jax.Array], jax.Array], rng: jax.Array, *,
                     cache_dir: str | None,
                     inception_weights: str | None = None) -> dict[str, float | str]:
    """Sample metrics of config.eval.num_samples images drawn as sample_batch(key) -> [B, H, W, C]
    (B = config.eval.batch_size, in the data's value range), against the real eval split.

    `fid_data_floor` is the FID of as many real train images as samples (or the whole train split
    if smaller) against the eval split: what unseen real data scores at the same sample size.
    """
    num, batch_size = config.eval.num_samples, config.eval.batch_size
    check_num_samples(num)
    extractor = choose_extractor(config.data.name, inception_weights)
    if isinstance(extractor, str):
        logging.warning(extractor)
        return {'sample_metrics_note': extractor}
    info = data.dataset_info(config.data)
    d = config.data
    real_stats, real_feats = reference(extractor, d, d.eval_split, info.num_examples[d.eval_split],
                                       cache_dir, batch_size, keep_features=True)
    num_floor = min(num, info.num_examples[d.train_split])
    floor_stats, _ = reference(extractor, d, d.train_split, num_floor, cache_dir, batch_size,
                               keep_features=False)
    feats, probs = [], []
    for i in range(-(-num // batch_size)):
        f, p = extractor.fn(to_unit(config, sample_batch(jax.random.fold_in(rng, i))))
        feats.append(np.asarray(f))
        probs.append(np.asarray(p))
    result = sample_metrics(np.concatenate(feats)[:num], np.concatenate(probs)[:num], real_feats,
                            real_stats)
    return {
        f'fid_{extractor.key}': result.pop('fid'),
        'fid_data_floor': metrics.frechet_distance(floor_stats.mu, floor_stats.sigma,
                                                   real_stats.mu, real_stats.sigma),
        'fid_data_floor_num_images': num_floor,
        **result,
        'num_samples': num,
        'feature_extractor': extractor.name,
        'feature_extractor_sha256': extractor.sha256,
    }


def per_sampler(config: ml_collections.ConfigDict, names, make_batch: Callable[[str], Callable],
                rng: jax.Array) -> dict[str, float | str]:
    """For each sampler name: the sample metrics of eval.num_samples images drawn in batches by
    make_batch(name) -> (key -> [B, H, W, C]), suffixed with the name (fid_mnist_classifier_ddim50,
    ...), and sample_seconds_per_image_<name>, timed after one compiling batch."""
    out = {}
    b = config.eval.batch_size
    for i, name in enumerate(names):
        fn = jax.jit(make_batch(name))
        jax.block_until_ready(fn(rng))  # compile outside the timing
        seconds = []

        def timed(key, fn=fn):
            start = time.perf_counter()
            images = jax.block_until_ready(fn(key))
            seconds.append(time.perf_counter() - start)
            return images

        result = evaluate_samples(config, timed, jax.random.fold_in(rng, i), cache_dir=None)
        if 'sample_metrics_note' in result:
            return result
        for key in ('feature_extractor', 'feature_extractor_sha256', 'num_samples',
                    'fid_data_floor', 'fid_data_floor_num_images'):
            result.pop(key)
        out |= {f'{k}_{name}': v for k, v in result.items()}
        out[f'sample_seconds_per_image_{name}'] = float(np.sum(seconds) / (len(seconds) * b))
    return out


def read_labels(config: ml_collections.ConfigDict, generate: Callable, rng: jax.Array, num: int,
                classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(asked [num], read [num]): `num` generated images asked for class i mod `classes`, made in
    chunks of eval.batch_size by generate(key, asked [B]) -> images (in the data's value range),
    and the reading of each by the classifier shipped for the dataset: for label metrics
    (genmodels.metrics.labels)."""
    classify = classifier_extractor(config.data.name).fn
    b = config.eval.batch_size

    @jax.jit
    def chunk(key, asked):
        return jnp.argmax(classify(to_unit(config, generate(key, asked)))[1], -1)

    asked = labels.balanced(-(-num // b) * b, classes, xp=np)
    read = [np.asarray(chunk(jax.random.fold_in(rng, i), jnp.asarray(asked[i * b:(i + 1) * b])))
            for i in range(len(asked) // b)]
    return asked[:num], np.concatenate(read)[:num]
