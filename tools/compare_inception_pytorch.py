"""Checks genmodels' flax InceptionV3 against pytorch-fid's on the same random images.

torch is no dependency of genmodels: it lives in a side venv, and this script runs in two halves.
The torch half (run by you, in the side venv) builds pytorch-fid's InceptionV3, saves its state_dict
with torch.save in both of torch's file formats, runs it, then starts the JAX half (the repo's
.venv, never importing torch) which reads those files with genmodels' torch-free reader, converts
them, runs the flax model and hands the features back for comparison.

  python3.11 -m venv /tmp/venv-torch
  /tmp/venv-torch/bin/pip install torch==2.13.0 numpy scipy pillow
  /tmp/venv-torch/bin/pip install --no-deps pytorch-fid==0.3.0 torchvision==0.28.0
  /tmp/venv-torch/bin/python tools/compare_inception_pytorch.py [--weights PATH]

Without --weights both nets get the same random weights (conv He-normal, BatchNorm statistics and
affine parameters drawn away from the identity, so every layer's conversion matters).
torchvision's compiled ops do not load beside the CPU-only torch wheel, and pytorch-fid only needs
the pure-Python torchvision/models/inception.py; so the torchvision package __init__ files (which
load the ops) are bypassed by registering bare package modules that point at the installed folders.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = [(28, 28, 1), (32, 32, 3), (64, 48, 3), (341, 341, 3)]  # grey, CIFAR, non-square, downsized


def import_pytorch_fid():
    import importlib.util
    import types
    root = os.path.dirname(importlib.util.find_spec('torchvision').origin)
    for name in ('torchvision', 'torchvision.models'):
        module = types.ModuleType(name)
        module.__path__ = [os.path.join(root, *name.split('.')[1:])]
        sys.modules[name] = module
    import torchvision.models.inception as tv_inception
    from importlib.metadata import version
    sys.modules['torchvision'].__version__ = version('torchvision')
    sys.modules['torchvision'].models = sys.modules['torchvision.models']
    sys.modules['torchvision.models'].inception = tv_inception
    sys.modules['torchvision.models'].inception_v3 = tv_inception.inception_v3
    import pytorch_fid.inception
    return pytorch_fid.inception


def random_state_dict(model, seed):
    import torch
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, t in model.state_dict().items():
        leaf = name.rsplit('.', 1)[1]
        if name.startswith('fc.'):
            value = torch.randn(t.shape, generator=g) * (0.1 if leaf == 'bias' else 2048 ** -0.5)
        elif leaf == 'weight' and t.ndim == 4:
            value = torch.randn(t.shape, generator=g) * (2.0 / t[0].numel()) ** 0.5
        elif leaf == 'weight':
            value = 0.5 + torch.rand(t.shape, generator=g)
        elif leaf in ('bias', 'running_mean'):
            value = 0.2 * torch.randn(t.shape, generator=g)
        elif leaf == 'running_var':
            value = 0.5 + 1.5 * torch.rand(t.shape, generator=g)
        else:
            value = t
        out[name] = value.to(t.dtype)
    return out


def torch_half(args, workdir):
    import torch
    torch.set_num_threads(os.cpu_count() or 1)
    pfi = import_pytorch_fid()
    built = []
    make = pfi._inception_v3
    pfi._inception_v3 = lambda *a, **k: built.append(make(*a, **k)) or built[-1]
    pfi.load_state_dict_from_url = lambda *a, **k: (
        torch.load(args.weights, map_location='cpu') if args.weights
        else random_state_dict(built[-1], args.seed))
    wrapper = pfi.InceptionV3([3]).eval()
    inner = built[-1].eval()
    torch.save(inner.state_dict(), os.path.join(workdir, 'zip.pth'))
    torch.save(inner.state_dict(), os.path.join(workdir, 'legacy.pth'),
               _use_new_zipfile_serialization=False)

    rng = np.random.default_rng(args.seed)
    ref = {}
    for shape in SHAPES:
        images = rng.random((args.num_images, *shape), dtype=np.float32)  # [N, H, W, C] in [0, 1]
        np.save(os.path.join(workdir, 'images_%dx%dx%d.npy' % shape), images)
        x = torch.from_numpy(images).permute(0, 3, 1, 2).expand(-1, 3, -1, -1)
        with torch.no_grad():
            pool3 = wrapper(x)[0].flatten(1)
            ref[shape] = (pool3.numpy(), inner.fc(pool3).numpy())

    jax_args = [args.jax_python, os.path.abspath(__file__), '--side', 'jax', '--workdir', workdir]
    if args.weights:
        jax_args += ['--weights', args.weights]
    subprocess.run(jax_args, check=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))

    worst = 0.0
    for shape in SHAPES:
        got = np.load(os.path.join(workdir, 'out_%dx%dx%d.npz' % shape))
        for name, want, have in (('pool3', ref[shape][0], got['pool3']),
                                 ('logits', ref[shape][1], got['logits'])):
            diff = np.abs(want - have)
            rel = diff.max() / np.abs(want).max()
            big = np.abs(want) > 1e-2 * np.abs(want).max()
            elem = (diff[big] / np.abs(want[big])).max()
            worst = max(worst, rel)
            print(f'{shape} {name:6s} max|torch|={np.abs(want).max():.4g}  '
                  f'max abs diff={diff.max():.3g}  max abs diff / max|torch|={rel:.3g}  '
                  f'max elementwise rel diff (|torch| > 1% of max)={elem:.3g}')
    print(f'worst relative difference {worst:.3g}: {"OK" if worst < args.tolerance else "MISMATCH"}')
    return 0 if worst < args.tolerance else 1


def jax_half(args, workdir):
    from genmodels.metrics import inception, inception_weights, torch_pickle
    sd_zip = torch_pickle.load_torch_file(os.path.join(workdir, 'zip.pth'))
    sd_legacy = torch_pickle.load_torch_file(os.path.join(workdir, 'legacy.pth'))
    assert list(sd_zip) == list(sd_legacy) and all(
        np.array_equal(sd_zip[k], sd_legacy[k]) for k in sd_zip), 'zip and legacy files differ'
    print(f'[jax] read {len(sd_zip)} tensors from both torch file formats; they agree')
    variables = (inception_weights.load_inception_variables(args.weights) if args.weights
                 else inception_weights.state_dict_to_variables(sd_zip))
    for shape in SHAPES:
        images = np.load(os.path.join(workdir, 'images_%dx%dx%d.npy' % shape))
        out = inception.inception_outputs(variables, images)
        np.savez(os.path.join(workdir, 'out_%dx%dx%d.npz' % shape), pool3=out.pool3, logits=out.logits)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--weights', help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth "
                                      '(checked by sha256); random weights if unset')
    p.add_argument('--num-images', type=int, default=4)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--tolerance', type=float, default=1e-4, help='on max abs diff / max |torch|')
    p.add_argument('--jax-python', default=os.path.join(REPO, '.venv', 'bin', 'python'))
    p.add_argument('--side', choices=('torch', 'jax'), default='torch', help=argparse.SUPPRESS)
    p.add_argument('--workdir', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.side == 'jax':
        return jax_half(args, args.workdir)
    with tempfile.TemporaryDirectory() as workdir:
        return torch_half(args, workdir)


if __name__ == '__main__':
    sys.exit(main())
