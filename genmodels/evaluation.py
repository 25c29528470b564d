"""Evaluation of a trained workdir: the family's test metrics -> <workdir>/eval.json, plus figures.

`eval.json` is flat, one number per key with its unit in the name (DESIGN.md), plus `dataset`,
`split`, `family` and `step`, and how the data was preprocessed, so every likelihood is comparable.
Families that can `sample` also get FID/KID/IS/precision/recall of generated images
(genmodels/metrics/sample_quality.py), with the feature extractor's name and sha256. On toy data
the exact density is known, so eval.json also has `true_nll_nats` and `kl_estimate_nats`.

A run of several seeds (train.num_seeds = S) is evaluated lane by lane, each lane with its own
evaluation key (genmodels/training/train_state.py), and eval.json holds, for every number that
differs between lanes, `<key>` (the mean over seeds), `<key>_seeds_std` and `<key>_seed<i>`; a
number every lane shares (a setting, the data floor) is written once. Figures show lane 0.
"""

from __future__ import annotations

import ast
import functools
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from genmodels import data, families, viz
from genmodels.metrics import sample_quality, units
from genmodels.training import checkpoint, parallel, train_state, workdir as workdir_lib

PyTree = Any


def evaluate_state(config: ml_collections.ConfigDict, family, workdir: str, state: PyTree,
                   step: int, max_examples: int | None = None, *,
                   inception_weights: str | None = None, stats_cache: str | None = None
                   ) -> dict[str, Any]:
    """Test metrics and figures of a state; writes workdir/eval.json and workdir/figures/.

    A family with `sample` also gets the sample metrics of config.eval.num_samples images
    (genmodels.metrics.sample_quality); the real data's reference statistics are cached in
    `stats_cache` (default: workdir/reference_stats). `inception_weights` is the path of
    pytorch-fid's InceptionV3 weights, needed for datasets other than MNIST digits.
    """
    if hasattr(family, 'sample'):
        sample_quality.check_num_samples(config.eval.num_samples)  # before the slow likelihood
    split = config.data.eval_split
    limit = max_examples if max_examples is not None else config.eval.max_examples
    test = data.load_split(config.data, split, limit)
    sampler = make_sampler(config, family) if hasattr(family, 'sample') else None
    per_seed = []
    for lane, lane_state in enumerate(train_state.lanes(config, state)):
        params = parallel.to_host(families.eval_params(family, config, lane_state))
        rng = jax.random.fold_in(train_state.model_key(config, lane), train_state.EVAL)
        results = family.evaluate(config, params, test, rng)
        if data.is_toy(config.data.name):
            results |= units.toy_reference(config.data, test['image'], results)
        if sampler is not None:
            results |= sample_quality.evaluate_samples(
                config, functools.partial(sampler, params), jax.random.fold_in(rng, 3),
                cache_dir=stats_cache or os.path.join(workdir, 'reference_stats'),
                inception_weights=inception_weights)
        if lane == 0 and config.train.figures and jax.process_index() == 0:
            fig_dir = os.path.join(workdir, 'figures')
            os.makedirs(fig_dir, exist_ok=True)
            family.figures(config, params, test, jax.random.fold_in(rng, 1), fig_dir)
        per_seed.append(results)
    record = {'family': config.family, 'dataset': config.data.name, 'split': split,
              'step': int(step), 'num_examples': int(len(test['image'])),
              **data.preprocessing(config.data).record(), **combine_seeds(per_seed)}
    if train_state.num_seeds(config) > 1:
        record['num_seeds'] = train_state.num_seeds(config)
    if jax.process_index() == 0:
        workdir_lib.write_json(os.path.join(workdir, 'eval.json'), record)
    return record


def combine_seeds(per_seed: list[dict[str, Any]], sep: str = '_') -> dict[str, Any]:
    """One record from the records of S lanes: a value every lane shares once; a number that
    differs as `<key>` (mean), `<key>_seeds_std` and `<key>_seed<i>` (with `sep` before `seed<i>`).
    """
    if len(per_seed) == 1:
        return dict(per_seed[0])
    out = {}
    for key, first in per_seed[0].items():
        values = [r[key] for r in per_seed]
        if all(v == first for v in values):
            out[key] = first
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = float(np.mean(values))
            out[f'{key}_seeds_std'] = float(np.std(values))
            out |= {f'{key}{sep}seed{i}': v for i, v in enumerate(values)}
        else:
            out |= {f'{key}{sep}seed{i}': v for i, v in enumerate(values)}
    return out


def make_sampler(config: ml_collections.ConfigDict, family):
    """jit(sample): (params, key) -> eval.batch_size images (labels: the family's default).
    Build it once and reuse it: each new jit wrapper compiles again."""
    b = config.eval.batch_size
    return jax.jit(lambda p, key: family.sample(config, p, key, b))


def training_fid(config: ml_collections.ConfigDict, family, workdir: str, sampler, state: PyTree,
                 step: int) -> dict[str, float]:
    """FID of a small sample of every lane during training, labelled with its sample size (it is
    biased upwards at small N, so only compare numbers with the same label). `sampler` comes
    from `make_sampler`; with several seeds, the mean and `<key>/seed<i>`."""
    small = ml_collections.ConfigDict(config.to_dict())
    small.eval.num_samples = config.train.fid_num_samples
    n = config.train.fid_num_samples
    per_seed = []
    for lane, lane_state in enumerate(train_state.lanes(config, state)):
        key = jax.random.fold_in(train_state.model_key(config, lane), train_state.TRAIN_FID)
        result = sample_quality.evaluate_samples(
            small, functools.partial(sampler, families.eval_params(family, config, lane_state)),
            jax.random.fold_in(key, step), cache_dir=os.path.join(workdir, 'reference_stats'))
        per_seed.append({f'{k}_{n}samples': v for k, v in result.items()
                         if k.startswith('fid_') and not k.endswith('num_images')})
    combined = combine_seeds(per_seed, sep='/')
    return {k: v for k, v in combined.items() if not k.endswith('_seeds_std')}


PROGRESS_IMAGES, PROGRESS_POINTS = 64, 1000  # samples in a progress figure: images, toy points
PROGRESS_TEXTS = 8  # of a text dataset's samples, those shown


def make_progress_sampler(config: ml_collections.ConfigDict, family):
    """jit(sample) of a progress figure's size: (params, key) -> samples."""
    num = viz.num_samples(config.data, PROGRESS_POINTS, PROGRESS_IMAGES)
    return jax.jit(lambda p, key: family.sample(config, p, key, num))


def progress_figure(config: ml_collections.ConfigDict, family, workdir: str, sampler,
                    state: PyTree, step: int) -> str:
    """Samples of lane 0 from fixed noise (the same key at every step, so that figures compare),
    saved as workdir/figures/progress/samples_<step>.png: an image grid, or for 2D toy data the
    points over the true log-density. `sampler` comes from `make_progress_sampler`."""
    lane = train_state.lanes(config, state)[0]
    key = jax.random.fold_in(train_state.model_key(config, 0), train_state.PROGRESS)
    samples = np.asarray(sampler(parallel.to_host(families.eval_params(family, config, lane)),
                                 key))
    path = os.path.join(workdir, 'figures', 'progress', f'samples_{step:07d}.png')
    title = f'{config.family} samples, step {step}'
    reference = (np.asarray(data.toy_distribution(config.data.name).sample(key, PROGRESS_POINTS))
                 if data.is_toy(config.data.name) else None)  # the box of the toy's figure
    return viz.save_samples(config.data, samples, path, title, reference=reference,
                            panel_title=title, num_texts=PROGRESS_TEXTS)[0]


class Monitor:
    """What the training loop asks of evaluation after each step: the FID of a small sample every
    train.fid_every steps, and a progress figure every train.figures_every steps."""

    def __init__(self, config: ml_collections.ConfigDict, family, workdir: str):
        self.config, self.family, self.workdir = config, family, workdir
        self.every = config.train
        self.fid_sampler = make_sampler(config, family) if self.every.fid_every else None
        self.progress = (make_progress_sampler(config, family) if self.every.figures_every
                         else None)

    def __call__(self, step: int, state: PyTree, writer) -> None:
        """Runs what is due at `step`, writing to `writer` (a workdir.MetricWriter)."""
        if self.every.fid_every and step % self.every.fid_every == 0:
            fid = training_fid(self.config, self.family, self.workdir, self.fid_sampler, state,
                               step)
            if fid:  # Empty when the dataset has no feature extractor (a warning says so).
                writer.write(step, fid)
        if (self.progress is not None and step % self.every.figures_every == 0
                and jax.process_index() == 0):
            path = progress_figure(self.config, self.family, self.workdir, self.progress, state,
                                   step)
            writer.write_image(step, 'samples', path)


def load_config(workdir: str) -> ml_collections.ConfigDict:
    saved = families.read_saved(workdir)
    if saved is None:
        what = 'has no config.json' if os.path.isdir(workdir) else 'does not exist'
        raise FileNotFoundError(f'--workdir {workdir} {what}: give a directory made by train.py.')
    cfg = ml_collections.ConfigDict(saved)
    families.validated(cfg, resolve_objective=False)  # evaluation never runs a workdir's code
    return cfg


def restore(workdir: str, overrides: dict | None = None
            ) -> tuple[ml_collections.ConfigDict, PyTree, int]:
    """(config, state, step) of the latest checkpoint of `workdir`; `overrides` maps
    'section.key' to a new value (only keys that a resumed run may change make sense here)."""
    config = load_config(workdir)
    for key, value in (overrides or {}).items():
        section, name = key.split('.')
        config[section][name] = value
    family = families.validated(config, resolve_objective=False)
    mesh = parallel.make_mesh()
    mngr = checkpoint.manager(workdir, read_only=True)
    if families.is_fit(family):  # its shapes depend on the data: the checkpoint records them
        def restore_step(step):
            return checkpoint.restore_as_saved(mngr, parallel.replicated(mesh), step)[0]
    else:
        example = train_state.example_batch(data.dataset_info(config.data))
        target = train_state.abstract_state(config, family, mesh, example)

        def restore_step(step):
            return checkpoint.restore(mngr, target, step)[0]
    state, step = checkpoint.restore_newest_readable(mngr, restore_step)
    if state is None:
        raise FileNotFoundError(f'no checkpoint in {workdir}/checkpoints: train it first.')
    return config, state, step


def evaluate_workdir(workdir: str, max_examples: int | None = None,
                     overrides: dict | None = None, *, inception_weights: str | None = None,
                     stats_cache: str | None = None) -> dict[str, Any]:
    """Loads the newest readable checkpoint of `workdir` and evaluates it (eval.py's entry
    point)."""
    if max_examples is not None and max_examples <= 0:
        raise ValueError(f'--max_examples must be positive, got {max_examples}.')
    if inception_weights is not None:  # before the checkpoint is read
        saved = load_config(workdir)
        _check_inception_wanted(saved, families.get(saved.family))
    config, state, step = restore(workdir, overrides)
    family = families.get(config.family)
    return evaluate_state(config, family, workdir, state, step, max_examples,
                          inception_weights=inception_weights, stats_cache=stats_cache)


def _check_inception_wanted(config: ml_collections.ConfigDict, family) -> None:
    """--inception_weights must change something: a family that samples, on data without a
    shipped classifier (whose features the sample metrics use instead)."""
    if not hasattr(family, 'sample'):
        raise ValueError(f'--inception_weights: the {config.family} family draws no samples, so '
                         f'no sample metric uses InceptionV3; leave the flag out.')
    if sample_quality.has_classifier(config.data.name):
        raise ValueError(f'--inception_weights: the sample metrics of {config.data.name} use the '
                         f'classifier shipped for it, not InceptionV3; leave the flag out.')


def parse_settings(settings: list[str], workdir: str) -> dict[str, Any]:
    """['sampler.guidance_scale=3', ...] -> {'sampler.guidance_scale': 3.0, ...} for `restore`'s
    overrides: each key one that may change on a trained workdir (families.resumable_keys), each
    value a Python literal of the saved value's type (a bare word is a string)."""
    config = load_config(workdir)
    allowed = set(families.resumable_keys(families.get(config.family)))
    return {setting.partition('=')[0]: _parse_setting(setting, config, allowed)
            for setting in settings}


def _parse_setting(setting: str, config: ml_collections.ConfigDict, allowed: set[str]) -> Any:
    key, sep, text = setting.partition('=')
    if not sep or key not in allowed:
        shown = sorted(k for k in allowed  # those that concern evaluation
                       if not k.startswith('train.') and not k.endswith('.learning_rate'))
        raise ValueError(f'--set {setting!r}: use --set section.key=value with a key of '
                         f'{shown}.')
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    section, name = key.split('.')
    old = config[section][name]
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(old, (tuple, list)) and isinstance(value, (str, list, tuple)):
        value = type(old)([value] if isinstance(value, str) else value)
    if old is not None and type(value) is not type(old):
        raise ValueError(f'--set {setting!r}: {key} is a {type(old).__name__}, got '
                         f'{type(value).__name__} {value!r}.')
    return value
