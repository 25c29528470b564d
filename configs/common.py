"""Shared config sections. Every value is spelled out here or in the experiment file that calls
these; nothing in genmodels/ supplies a default."""

import ml_collections


def data(name: str, *, scale: str = '01', binarize: bool = False, dequantize: bool = False
         ) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({
        'name': name,               # a bundled, toy or TFDS dataset, text:<path>,
                                    # images:<folder> or arrays:<file>.npz (data/local.py)
        'data_dir': ml_collections.config_dict.placeholder(str),  # None: TFDS's default data dir
        'train_split': 'train',
        'eval_split': 'test',
        'scale': scale,             # '01' or '-11'; 'none' for toy data (used as they are)
        'binarize': binarize,       # dynamic binarisation (Bernoulli likelihoods)
        'dequantize': dequantize,   # uniform dequantisation (continuous likelihoods)
        'seed': 0,                  # the training stream: example order, binarisation noise
        'eval_seed': 0,             # fixes the test set's binarisation/dequantisation noise
        'sequence_length': 0,       # text data: characters per example; 0 for other data
        'image_size': 0,            # images:/arrays: data: resize and centre-crop to S x S; 0: as is
        'image_channels': 0,        # images:/arrays: data: 1 or 3; 0: as the files are
    })


def denoiser_model() -> dict:
    """The network keys the DDPM and score configs share: genmodels/nn/unet.py's U-Net (images) and
    MLP denoiser (toy points), at the small size the MNIST configs use."""
    return {
        'architecture': 'unet',     # 'unet' (images) or 'mlp' (toy points)
        'channels': 16,             # U-Net base width
        'channel_mults': (1, 2, 4),
        'num_res_blocks': 1,
        'attention_resolutions': (7,),
        'num_heads': 1,
        'dropout': 0.0,
        'hidden': (256, 256, 256),  # MLP only
        'embed_dim': 128,           # MLP only
    }


def optimizer(learning_rate: float, *, name: str = 'adam', schedule: str = 'constant',
              warmup_steps: int = 0, grad_clip_norm: float = 0.0) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({
        'name': name,               # 'adam' or 'adamw'
        'learning_rate': learning_rate,
        'b1': 0.9,
        'b2': 0.999,
        'weight_decay': 0.0,        # adamw only
        'grad_clip_norm': grad_clip_norm,  # 0: no clipping
        'schedule': schedule,       # 'constant' or 'cosine' (to zero at num_steps)
        'warmup_steps': warmup_steps,
    })


def train(batch_size: int, num_steps: int, *, log_every: int = 100, checkpoint_every: int = 1000,
          ema_rate: float = 0.0) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({
        'batch_size': batch_size,   # global batch, split over all devices
        'num_steps': num_steps,
        'num_seeds': 1,             # models trained side by side in one program, seeds seed..seed+N-1
        'grad_accum_steps': 1,      # micro-batches per step, gradients summed inside the step
        'compute_dtype': 'float32',  # or 'bfloat16': activations and matmuls; weights stay float32
        'param_sharding': 'replicated',  # or 'fsdp': parameters and optimizer state split over
                                    # the devices (genmodels/training/parallel.py)
        'remat': 'none',            # or 'blocks': recompute each block's activations in the
                                    # backward pass (families with REMAT_BLOCKS)
        'log_every': log_every,
        'checkpoint_every': checkpoint_every,
        'keep_checkpoints': 3,
        'init_from': '',            # a run's workdir: start from its newest checkpoint's weights
                                    # (fine-tuning; the optimizer and step start afresh)
        'ema_rate': ema_rate,       # 0: EMA params equal the params
        'figures': True,
        'figures_every': 0,         # samples from fixed noise every N steps into figures/progress/
                                    # and TensorBoard (0: never); families that sample
        'fid_every': 0,             # FID of a small sample every N steps (0: never); families
        'fid_num_samples': 1000,    # with `sample` only; logged as fid_<extractor>_<N>samples
    })


def fit_train(*, figures: bool = True) -> ml_collections.ConfigDict:
    """The `train` section of a fit family (closed form or EM): no optimizer, no loop."""
    return ml_collections.ConfigDict({
        'figures': figures,
    })


def evaluation(*, batch_size: int = 100, iwae_k: int = 1000, num_samples: int = 10_000,
               use_ema: bool = False) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({
        'batch_size': batch_size,
        'max_examples': ml_collections.config_dict.placeholder(int),  # None: the whole split
        'num_samples': num_samples,  # generated images for sample-based metrics
        'iwae_k': iwae_k,            # importance samples for the IWAE bound on log p(x)
        'use_ema': use_ema,
    })


def apply_arg(config: ml_collections.ConfigDict, arg: str | None, path: str
              ) -> ml_collections.ConfigDict:
    """The config argument (`--config path:arg`): 'smoke' shrinks a run to seconds, for checking
    that a config runs end to end; no argument leaves it as is."""
    if arg == 'smoke':
        if 'num_steps' in config.train:  # a fit family's train section has no loop to shorten
            config.train.num_steps = 20
            config.train.log_every = 5
            config.train.checkpoint_every = 10
            if config.train.figures_every:
                config.train.figures_every = 10
        config.eval.iwae_k = min(config.eval.iwae_k, 8)
        config.eval.max_examples = 100
        config.eval.num_samples = 500
    elif arg is not None:
        raise ValueError(f'unknown config argument {arg!r}; use {path} or {path}:smoke.')
    return config
