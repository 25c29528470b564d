"""The sections every GAN config shares; each experiment file sets the rest."""

import ml_collections

from configs import common


def base(dataset: str, *, scale: str = '-11') -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.family = 'gan'
    config.objective = 'non_saturating'  # minimax, non_saturating, hinge, least_squares, wgan_gp
    config.seed = 0
    config.data = common.data(dataset, scale=scale)
    config.model = ml_collections.ConfigDict({
        'architecture': 'dcgan',    # 'mlp' or 'dcgan'
        'latent_dim': 100,
        'hidden': (512, 512),       # MLP widths of G; D mirrors them
        'channels': (64, 128),      # DCGAN: D's channels per stride-2 level; G mirrors them
        'conditional': False,
        'info_categorical': 0,
        'info_continuous': 0,
        'spectral_norm': False,
        'init_std': 0.02,           # DCGAN's N(0, 0.02) weights; 0: LeCun normal
        'fourier_features': 0,      # MLP D: sin/cos of this many random projections of x (0: off)
        'fourier_scale': 1.0,       # their frequencies' std, cycles per unit of x
        'fc_hidden': 0,             # DCGAN: a dense layer first in G, last in D (InfoGAN: 1024)
        'disc_batch_norm': False,   # DCGAN: batch norm in D and Q's head (InfoGAN's networks)
    })
    config.loss = ml_collections.ConfigDict({
        'n_disc': 1,
        'gp_weight': 10.0,          # read by the wgan_gp objective only
        'r1_weight': 0.0,
        'r1_fraction': 1.0,         # R1 on this share of the real batch (1: all of it)
        'info_weight': 1.0,         # read by InfoGAN configs only: lambda of the categorical code
        'info_continuous_weight': 1.0,  # and of the continuous codes
        'info_decay_fraction': 0.0,  # both fall linearly to 0 over this last share of the steps
        'top_k': 1.0,               # top-k G updates off
        'top_k_decay_steps': 0,
        'augment': '',              # DiffAugment of D's inputs, e.g. 'translation,cutout'
    })
    # DCGAN's recipe for both players: Adam 2e-4, beta1 0.5 (Radford et al. 2016, Sec. 4).
    config.optimizer = common.optimizer(2e-4)
    config.optimizer.b1 = 0.5
    config.disc_optimizer = common.optimizer(2e-4)
    config.disc_optimizer.b1 = 0.5
    # 5,000 steps of batch 128: 142 passes over mnist_bundled's 4,500 training digits.
    config.train = common.train(batch_size=128, num_steps=5000, log_every=200,
                                checkpoint_every=1000, ema_rate=0.999)
    config.train.figures_every = 1000
    config.eval = common.evaluation(use_ema=True)
    # Off: samples are G's own. r > 0 rejects the share r of z where G is steepest
    # (genmodels/families/gan/truncation.py).
    config.sampler = ml_collections.ConfigDict({'jacobian_truncation': 0.0})
    return config
