"""Helpers several test modules share."""

import importlib

import jax
import ml_collections


def jitted_init(family, config, key: jax.Array, example: dict):
    """family.init(config, key, example) in one compiled program, as the trainer builds it. Run op
    by op, each initialiser compiles a small program of its own for every parameter shape: the
    MLP InfoGAN's init took 12 s that way."""
    return jax.jit(lambda k: family.init(config, k, example))(key)


def smoke_config(name: str, data_dir: str | None = None, *overrides: dict
                 ) -> ml_collections.ConfigDict:
    """configs/<name>.py:smoke reading TFDS data from `data_dir` (None: TFDS's default), with each
    dict of dotted keys applied in turn ({'train.num_steps': 8}): a test names what it needs
    beyond the smoke config, and follows the config file in everything else. A key the config
    lacks is an error, as --config.<key> is for train.py."""
    config = importlib.import_module(f'configs.{name}').get_config('smoke')
    config.data.data_dir = data_dir
    for values in overrides:
        for key, value in values.items():
            *path, leaf = key.split('.')
            section = config
            for part in path:
                section = section[part]
            if leaf not in section:
                raise KeyError(f'configs/{name}.py:smoke has no key {key}')
            section[leaf] = value
    return config


# The configs the loop's tests train, beyond their smoke configs: small nets on small batches, a
# log line every 2 steps and a checkpoint every 4 (the resume tests stop between them), no
# figures, and an evaluation of a few dozen examples.
SHORT_RUN = {'train.log_every': 2, 'train.checkpoint_every': 4, 'train.figures': False}

# configs/vae_mnist.py: a 32-unit VAE with a 4-d latent, 12 steps of batch 16.
VAE = {**SHORT_RUN, 'model.hidden': (32,), 'model.latent_dim': 4, 'loss.kl_warmup_steps': 4,
       'optimizer.warmup_steps': 2, 'train.batch_size': 16, 'train.num_steps': 12,
       'eval.iwae_k': 4, 'eval.max_examples': 32, 'eval.batch_size': 16, 'eval.num_samples': 64}

# configs/dcgan_mnist.py: a DCGAN of 4 and 8 channels with batch-norm and spectral-norm state and
# a scanned second D step, 8 steps of batch 16. R1's double backward pass is tested by
# test_gan.py's resume test.
DCGAN = {**SHORT_RUN, 'model.channels': (4, 8), 'model.latent_dim': 8,
         'model.spectral_norm': True, 'loss.n_disc': 2, 'loss.r1_weight': 0.0,
         'train.batch_size': 16, 'train.num_steps': 8,
         'eval.max_examples': 64, 'eval.num_samples': 64, 'eval.batch_size': 32}

# configs/ddpm_grid25.py: a 32 x 2 MLP denoiser over 100 timesteps, 8 steps of batch 32; the
# bound's estimate at 10 timesteps and no extra sampler evaluated.
DDPM_TOY = {**SHORT_RUN, 'model.hidden': (32, 32), 'model.embed_dim': 16,
            'model.num_timesteps': 100, 'sampler.num_steps': 10, 'train.batch_size': 32,
            'train.num_steps': 8, 'train.figures_every': 0, 'eval.max_examples': 64,
            'eval.batch_size': 32, 'eval.nll_timesteps': 10, 'eval.samplers': ()}

# configs/edm_grid25.py: a 32 x 2 MLP denoiser, 8 steps of batch 32, the likelihood by RK4 over 8
# steps on 64 test points.
EDM_TOY = {**SHORT_RUN, 'model.hidden': (32, 32), 'model.embed_dim': 16, 'train.batch_size': 32,
           'train.num_steps': 8, 'train.figures_every': 0, 'eval.max_examples': 64,
           'eval.batch_size': 32, 'eval.num_samples': 256, 'eval.ode_likelihood_solver': 'rk48'}

# configs/fm_toy2d.py with the exact minibatch OT coupling (computed over the global batch): a
# 32 x 2 MLP velocity field, 8 steps of batch 32, W2 and the NLL of 64 points.
FM_OT_TOY = {**SHORT_RUN, 'objective': 'ot_cfm', 'model.hidden': (32, 32), 'model.embed_dim': 16,
             'train.batch_size': 32, 'train.num_steps': 8, 'train.figures_every': 0,
             'eval.max_examples': 64, 'eval.batch_size': 32, 'eval.num_samples': 64,
             'eval.w2_samples': 64, 'eval.samplers': ()}
