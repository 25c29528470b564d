"""FID reference statistics on disk: one .npz with mu, sigma and a record of how they were made.

A reference mu/sigma is only comparable with statistics computed by the same extractor (same
weights) on the same data, so the metadata travels with the arrays and is checked on load.
"""
import dataclasses
import json
import os
import zipfile

import numpy as np

FORMAT = 'genmodels-fid-stats-v1'
_METADATA_FIELDS = ('dataset', 'split', 'num_images', 'extractor', 'extractor_sha256')


@dataclasses.dataclass(frozen=True)
class ReferenceStats:
    mu: np.ndarray        # [D] float64
    sigma: np.ndarray     # [D, D] float64
    dataset: str          # dataset name as genmodels.data knows it, e.g. 'mnist_bundled'
    split: str            # e.g. 'train'
    num_images: int       # how many images the statistics were computed from
    extractor: str        # e.g. 'pytorch_fid_inception_v3_pool3'
    extractor_sha256: str  # sha256 of the extractor's weights file

    def metadata(self) -> dict:
        return {k: getattr(self, k) for k in _METADATA_FIELDS}


def save_reference_stats(path, stats: ReferenceStats) -> None:
    """Writes stats to `path` (.npz); the metadata is a JSON string, so loading needs no pickle."""
    mu, sigma = np.asarray(stats.mu, np.float64), np.asarray(stats.sigma, np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.size, mu.size):
        raise ValueError(f'expected mu [D] and sigma [D, D], got {mu.shape} and {sigma.shape}')
    sha = stats.extractor_sha256
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in '0123456789abcdef' for c in sha)):
        raise ValueError(f'extractor_sha256 must be 64 lowercase hex digits, got {sha!r}')
    if not (isinstance(stats.num_images, int) and stats.num_images > 0):
        raise ValueError(f'num_images must be a positive int, got {stats.num_images!r}')
    meta = dict(stats.metadata(), format=FORMAT)
    tmp = f'{os.fspath(path)}.tmp.npz'  # write then rename: no half-written file on failure
    np.savez(tmp, mu=mu, sigma=sigma, metadata=np.array(json.dumps(meta, sort_keys=True)))
    os.replace(tmp, path)


def load_reference_stats(path, **expected) -> ReferenceStats:
    """Reads stats written by save_reference_stats and checks every metadata field given in
    `expected` (dataset=, split=, num_images=, extractor=, extractor_sha256=) against the file."""
    unknown = set(expected) - set(_METADATA_FIELDS)
    if unknown:
        raise TypeError(f'unknown metadata fields {sorted(unknown)}; known: {_METADATA_FIELDS}')
    try:
        with np.load(path, allow_pickle=False) as f:
            mu, sigma, meta = f['mu'], f['sigma'], json.loads(str(f['metadata']))
    except FileNotFoundError:
        raise FileNotFoundError(f'FID reference statistics {path} do not exist; compute them with '
                                'genmodels.metrics.save_reference_stats') from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f'FID reference statistics {path} are corrupt or not written by '
                         f'save_reference_stats ({type(e).__name__}: {e}); recompute them') from None
    found = meta.get('format') if isinstance(meta, dict) else None
    if found != FORMAT:
        raise ValueError(f'{path}: metadata format is {found!r}, expected {FORMAT!r}; '
                         'recompute the statistics')
    missing = [k for k in _METADATA_FIELDS if k not in meta]
    if missing:
        raise ValueError(f'{path}: metadata lacks {missing}; recompute the statistics')
    if mu.ndim != 1 or sigma.shape != (mu.size, mu.size):
        raise ValueError(f'{path}: mu {mu.shape} and sigma {sigma.shape} are not [D] and [D, D]')
    for key, want in expected.items():
        if meta[key] != want:
            raise ValueError(f'{path}: {key} is {meta[key]!r} but {want!r} was expected; these '
                             'statistics were made differently, recompute them for this setting')
    return ReferenceStats(mu=mu, sigma=sigma, **{k: meta[k] for k in _METADATA_FIELDS})
