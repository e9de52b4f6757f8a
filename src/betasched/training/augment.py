"""CIFAR-10 input pipeline on tensors: normalisation, and batched crop + flip on the device."""
from __future__ import annotations

import torch
import torch.nn.functional as F

MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1) * 255
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1) * 255


def normalize(x_uint8: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    x = (x_uint8.float() - MEAN.to(x_uint8.device)) / STD.to(x_uint8.device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random crop with 4-pixel zero padding and horizontal flip, for a whole batch at once."""
    return apply_augment(x, *draw_augment(len(x), gen))


def draw_augment(n: int, gen: torch.Generator):
    """The random draws of augment() for n images: drawn for a whole global batch, so that
    data-parallel ranks can apply their shard of them."""
    dy = torch.randint(0, 9, (n,), generator=gen, device=gen.device)
    dx = torch.randint(0, 9, (n,), generator=gen, device=gen.device)
    flip = torch.rand(n, generator=gen, device=gen.device) < 0.5
    return dy, dx, flip


def apply_augment(x: torch.Tensor, dy, dx, flip) -> torch.Tensor:
    n, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    dy, dx, flip = dy.to(x.device), dx.to(x.device), flip.to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    out = padded[torch.arange(n, device=x.device)[:, None, None, None], chans, rows, cols]
    return torch.where(flip[:, None, None, None], out.flip(3), out)
