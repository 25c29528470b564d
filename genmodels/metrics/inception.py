"""InceptionV3 as TF-FID uses it (the network pytorch-fid ports), in flax.linen, NHWC.

Same graph as pytorch-fid's FID InceptionV3 (torchvision's Inception3 with the FIDInceptionA/C/E
patches): average pools in the Mixed blocks ignore padding (count_include_pad=False, as TF does),
the last block (Mixed_7c) max-pools instead, and every conv is conv -> BatchNorm(eps=1e-3) -> ReLU.
Module names follow torchvision's, so a pytorch-fid state_dict maps onto it name for name
(see inception_weights.py). pool3 [N, 2048] feeds FID/KID/precision-recall; logits [N, 1008] the IS.
"""
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

INPUT_SIZE = 299
NUM_CLASSES = 1008  # the 2015-12-05 TF graph's softmax has 1008 outputs, 1000 of them ImageNet classes
HIGHEST = jax.lax.Precision.HIGHEST  # full float32 on GPU/TPU too: features must not depend on it


class InceptionOutputs(NamedTuple):
    pool3: jax.Array            # [N, 2048] final average pool: the FID features
    logits: jax.Array           # [N, 1008] fc(pool3), with bias
    logits_unbiased: jax.Array  # [N, 1008] pool3 @ W without the bias, as Salimans et al.'s IS code


class BasicConv(nn.Module):
    """torchvision's BasicConv2d: conv (no bias) -> BatchNorm(eps=0.001) -> ReLU."""
    features: int
    kernel: tuple[int, int] = (1, 1)
    stride: int = 1
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x):
        (ph, pw) = self.padding
        x = nn.Conv(self.features, self.kernel, strides=self.stride, padding=((ph, ph), (pw, pw)),
                    use_bias=False, precision=HIGHEST, name='conv')(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name='bn')(x)
        return nn.relu(x)


def _avg_pool_3x3(x):  # TF's SAME average pool: padded zeros are not counted
    return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_s2(x):
    return nn.max_pool(x, (3, 3), (2, 2))


class InceptionA(nn.Module):  # FIDInceptionA: 35x35 grid
    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv(64, name='branch1x1')(x)
        b5 = BasicConv(48, name='branch5x5_1')(x)
        b5 = BasicConv(64, (5, 5), padding=(2, 2), name='branch5x5_2')(b5)
        b3 = BasicConv(64, name='branch3x3dbl_1')(x)
        b3 = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(b3)
        b3 = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_3')(b3)
        bp = BasicConv(self.pool_features, name='branch_pool')(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):  # grid reduction 35 -> 17
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(384, (3, 3), stride=2, name='branch3x3')(x)
        bd = BasicConv(64, name='branch3x3dbl_1')(x)
        bd = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
        bd = BasicConv(96, (3, 3), stride=2, name='branch3x3dbl_3')(bd)
        return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):  # FIDInceptionC: 17x17 grid with factorised 7x7 convs
    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c7 = self.channels_7x7
        b1 = BasicConv(192, name='branch1x1')(x)
        b7 = BasicConv(c7, name='branch7x7_1')(x)
        b7 = BasicConv(c7, (1, 7), padding=(0, 3), name='branch7x7_2')(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name='branch7x7_3')(b7)
        bd = BasicConv(c7, name='branch7x7dbl_1')(x)
        bd = BasicConv(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_2')(bd)
        bd = BasicConv(c7, (1, 7), padding=(0, 3), name='branch7x7dbl_3')(bd)
        bd = BasicConv(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_4')(bd)
        bd = BasicConv(192, (1, 7), padding=(0, 3), name='branch7x7dbl_5')(bd)
        bp = BasicConv(192, name='branch_pool')(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):  # grid reduction 17 -> 8
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(192, name='branch3x3_1')(x)
        b3 = BasicConv(320, (3, 3), stride=2, name='branch3x3_2')(b3)
        b7 = BasicConv(192, name='branch7x7x3_1')(x)
        b7 = BasicConv(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(b7)
        b7 = BasicConv(192, (3, 3), stride=2, name='branch7x7x3_4')(b7)
        return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):  # FIDInceptionE_1 (pool='avg') and FIDInceptionE_2 (pool='max'): 8x8 grid
    pool: str

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv(320, name='branch1x1')(x)
        b3 = BasicConv(384, name='branch3x3_1')(x)
        b3 = jnp.concatenate([BasicConv(384, (1, 3), padding=(0, 1), name='branch3x3_2a')(b3),
                              BasicConv(384, (3, 1), padding=(1, 0), name='branch3x3_2b')(b3)], -1)
        bd = BasicConv(448, name='branch3x3dbl_1')(x)
        bd = BasicConv(384, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
        bd = jnp.concatenate([BasicConv(384, (1, 3), padding=(0, 1), name='branch3x3dbl_3a')(bd),
                              BasicConv(384, (3, 1), padding=(1, 0), name='branch3x3dbl_3b')(bd)], -1)
        # The TF-FID graph max-pools in its last block, where the paper average-pools.
        pooled = (_avg_pool_3x3(x) if self.pool == 'avg'
                  else nn.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1))))
        bp = BasicConv(192, name='branch_pool')(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
    """Input: [N, 299, 299, 3] in [-1, 1] (see preprocess). Output: InceptionOutputs."""

    @nn.compact
    def __call__(self, x) -> InceptionOutputs:
        x = BasicConv(32, (3, 3), stride=2, name='Conv2d_1a_3x3')(x)            # [N, 149, 149, 32]
        x = BasicConv(32, (3, 3), name='Conv2d_2a_3x3')(x)                      # [N, 147, 147, 32]
        x = BasicConv(64, (3, 3), padding=(1, 1), name='Conv2d_2b_3x3')(x)      # [N, 147, 147, 64]
        x = _max_pool_3x3_s2(x)                                                 # [N, 73, 73, 64]
        x = BasicConv(80, name='Conv2d_3b_1x1')(x)                              # [N, 73, 73, 80]
        x = BasicConv(192, (3, 3), name='Conv2d_4a_3x3')(x)                     # [N, 71, 71, 192]
        x = _max_pool_3x3_s2(x)                                                 # [N, 35, 35, 192]
        x = InceptionA(32, name='Mixed_5b')(x)                                  # [N, 35, 35, 256]
        x = InceptionA(64, name='Mixed_5c')(x)                                  # [N, 35, 35, 288]
        x = InceptionA(64, name='Mixed_5d')(x)                                  # [N, 35, 35, 288]
        x = InceptionB(name='Mixed_6a')(x)                                      # [N, 17, 17, 768]
        x = InceptionC(128, name='Mixed_6b')(x)
        x = InceptionC(160, name='Mixed_6c')(x)
        x = InceptionC(160, name='Mixed_6d')(x)
        x = InceptionC(192, name='Mixed_6e')(x)                                 # [N, 17, 17, 768]
        x = InceptionD(name='Mixed_7a')(x)                                      # [N, 8, 8, 1280]
        x = InceptionE('avg', name='Mixed_7b')(x)                               # [N, 8, 8, 2048]
        x = InceptionE('max', name='Mixed_7c')(x)                               # [N, 8, 8, 2048]
        pool3 = jnp.mean(x, axis=(1, 2))                                        # [N, 2048]
        fc = nn.Dense(NUM_CLASSES, precision=HIGHEST, name='fc')
        logits = fc(pool3)
        unbiased = jnp.matmul(pool3, fc.variables['params']['kernel'], precision=HIGHEST)
        return InceptionOutputs(pool3, logits, unbiased)


def preprocess(images) -> jax.Array:
    """[N, H, W, C] in [0, 1], C in {1, 3} -> [N, 299, 299, 3] in [-1, 1], as pytorch-fid does:
    bilinear resize with half-pixel centres and no antialiasing (F.interpolate(mode='bilinear',
    align_corners=False)), then 2x - 1. Grey images are repeated to 3 channels."""
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f'images must be [N, H, W, 1 or 3] in [0, 1], got shape {images.shape}')
    x = jnp.asarray(images, jnp.float32)
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    x = jax.image.resize(x, (x.shape[0], INPUT_SIZE, INPUT_SIZE, 3), 'bilinear', antialias=False)
    return 2.0 * x - 1.0


@jax.jit
def _apply(variables, x):
    return InceptionV3().apply(variables, x)


def inception_outputs(variables, images, batch_size: int = 100) -> InceptionOutputs:
    """Runs preprocess + InceptionV3 over images [N, H, W, C] in [0, 1] in batches -> NumPy-backed
    InceptionOutputs. Batches are padded to one shape so the network compiles once."""
    outs = []
    for i in range(0, len(images), batch_size):
        batch = preprocess(images[i:i + batch_size])
        n = batch.shape[0]
        if n < batch_size and len(images) > batch_size:
            batch = jnp.pad(batch, ((0, batch_size - n), (0, 0), (0, 0), (0, 0)))
        outs.append(jax.tree.map(lambda a: np.asarray(a[:n]), _apply(variables, batch)))
    return InceptionOutputs(*(np.concatenate(parts) for parts in zip(*outs)))
