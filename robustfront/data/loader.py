"""DeviceLoader: the whole dataset lives on the device; batching and augmentation run there."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..validation import check_int, check_number, invalid

_RRC_TRIES = 10  # candidate boxes per image, as in torchvision's RandomResizedCrop


def _epoch_seed(seed: int, epoch: int) -> int:
    # each epoch gets its own well-mixed seed, so resuming needs only (seed, epoch) and an
    # abandoned half-epoch cannot shift the random stream of later epochs
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0]) & (2**63 - 1)


def _check_int(name: str, v, low: int) -> int:
    return check_int(name, v, low)


def _pair(name: str, v, hi: float | None) -> tuple[float, float]:
    """(lo, hi) with 0 < lo <= hi (<= `hi` where given)."""
    allowed = f"two numbers 0 < lo <= hi{f' <= {hi:g}' if hi is not None else ''}"
    try:
        lo_v, hi_v = (check_number(name, e, 0, strict=True, hi=hi) for e in v)
    except (TypeError, ValueError):
        raise invalid(name, v, allowed) from None
    if lo_v > hi_v:
        raise invalid(name, v, allowed)
    return lo_v, hi_v


class DeviceLoader:
    """Batches (x float32 [B,C,H,W] in [0,1], y int64) from uint8 images held on `device`.

    train=True: shuffled with a device generator seeded from (seed, epoch), random crop with
    `crop` px zero padding, horizontal flip, optional Cutout square of `cutout` px.
    rrc=(scale_min, scale_max): random-resized-crop instead of the padded crop (the fine-tuning
    recipe; crop must be 0): a box of that fraction of the area and an aspect ratio in `rrc_ratio`
    (log-uniform) resampled bilinearly to the image size, then flip / cutout.
    Float arrays (synthetic data) are passed through unscaled and never augmented.
    views=2 (two-view methods such as Cons-AT and RAAT) yields a tuple of independently
    augmented copies of the same images in place of x.

    rank/world (data-parallel training, `shard`): every rank draws the same (seed, epoch)
    permutation and the same augmentation draws for the whole global batch of `batch_size`, and
    yields its own equal contiguous part of it; together the ranks see exactly the batch one process
    would. A global batch whose size is not a multiple of `world` (an epoch's last) loses its last
    size % world images, so that every rank holds as many (an empty batch is skipped).
    """

    def __init__(self, x, y, batch_size, *, device="cpu", train=True, crop=4, flip=True, cutout=0,
                 seed=0, drop_last=False, views=1, rrc=None, rrc_ratio=(3 / 4, 4 / 3), rank=0, world=1):
        self.views = _check_int("views", views, 1)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.crop = _check_int("crop", crop, 0)
        self.cutout = _check_int("cutout", cutout, 0)
        self.seed = _check_int("seed", seed, 0)
        self.rrc = None if rrc is None else _pair("rrc", rrc, 1.0)
        self.rrc_ratio = _pair("rrc_ratio", rrc_ratio, None)
        if self.rrc and self.crop:
            raise invalid("crop", crop, "crop=0 when rrc is set (the random-resized-crop replaces the padded crop)")
        self.device = torch.device(device)
        x, y = torch.as_tensor(x), torch.as_tensor(y)
        if len(x) != len(y):
            raise ValueError(f"x and y lengths differ: {len(x)} vs {len(y)}; allowed: one label per example")
        self.images = x.dtype == torch.uint8
        if self.images and x.ndim != 4:
            raise ValueError(f"uint8 images must have shape N,C,H,W; got {tuple(x.shape)}")
        self.x = x.to(self.device)
        self.y = y.to(self.device, torch.int64)
        self.train, self.flip, self.drop_last = bool(train), bool(flip), bool(drop_last)
        self.epoch = 0
        self._gen = torch.Generator(device=self.device)
        self.rank, self.world = 0, 1
        self.shard(rank, world)

    def shard(self, rank: int, world: int) -> None:
        """Yield rank `rank`'s part of every global batch of `world` ranks (see the class docstring)."""
        self.world = _check_int("world", world, 1)
        self.rank = _check_int("rank", rank, 0)
        if self.rank >= self.world:
            raise invalid("rank", rank, f"0 <= rank < world={world}")

    def _global_sizes(self) -> list[int]:
        """The size of each global batch that runs (one with fewer images than ranks does not)."""
        n, bs = len(self.y), self.batch_size
        sizes = [min(bs, n - i) for i in range(0, n, bs)]
        if self.drop_last and sizes and sizes[-1] < bs:
            sizes.pop()
        return [m for m in sizes if m >= self.world]

    def __len__(self) -> int:
        if self.world == 1:
            n = len(self.y)
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return len(self._global_sizes())

    def __iter__(self):
        g = self._gen
        g.manual_seed(_epoch_seed(self.seed, self.epoch))
        self.epoch += 1
        n, bs = len(self.y), self.batch_size
        if self.train:
            order = torch.randperm(n, generator=g, device=self.device)
        else:
            order = torch.arange(n, device=self.device)
        for i, m in enumerate(self._global_sizes() if self.world > 1 else [bs] * len(self)):
            idx = order[i * bs:i * bs + m]
            part = len(idx) // self.world          # equal shards; the last len(idx) % world images are left out
            keep = slice(self.rank * part, (self.rank + 1) * part) if self.world > 1 else slice(None)
            xb = self.x[idx[keep]]
            views = [self._prepare(xb, len(idx), keep) for _ in range(self.views)]
            yield (views[0] if self.views == 1 else tuple(views)), self.y[idx[keep]]

    def _prepare(self, xb: torch.Tensor, m: int, keep: slice) -> torch.Tensor:
        """Augment this rank's images with their part of the random draws made for the m images of the
        global batch (the same draws one process would make)."""
        if not self.images:
            return xb
        if self.train and self.rrc:
            return self._augment(self._random_resized_crop(xb.float().div_(255), m, keep), m, keep)
        return (self._augment(xb, m, keep) if self.train else xb).float().div_(255)

    def _random_resized_crop(self, x: torch.Tensor, m: int, keep: slice) -> torch.Tensor:
        """Vectorised RandomResizedCrop on a float batch: per image, the first of _RRC_TRIES boxes
        (area fraction uniform in rrc, aspect ratio log-uniform in rrc_ratio) that fits, else the
        whole image; box corners are continuous (sub-pixel), sampled by one affine grid_sample."""
        B, C, H, W = x.shape
        g, dev = self._gen, x.device
        area = torch.empty(m, _RRC_TRIES, device=dev).uniform_(*self.rrc, generator=g)[keep] * (H * W)
        log_r = torch.empty(m, _RRC_TRIES, device=dev).uniform_(*map(math.log, self.rrc_ratio), generator=g)[keep]
        w, h = (area * log_r.exp()).sqrt(), (area / log_r.exp()).sqrt()
        fits = (w <= W) & (h <= H)
        first = fits.int().argmax(1, keepdim=True)  # index of the first fitting box (0 when none fits)
        found = fits.any(1)
        w = torch.where(found, w.gather(1, first)[:, 0], float(W))
        h = torch.where(found, h.gather(1, first)[:, 0], float(H))
        x0 = torch.rand(m, generator=g, device=dev)[keep] * (W - w)
        y0 = torch.rand(m, generator=g, device=dev)[keep] * (H - h)
        theta = torch.zeros(B, 2, 3, device=dev)
        # output coordinates in [-1, 1] (pixel edges, align_corners=False) -> the box in the input
        theta[:, 0, 0], theta[:, 0, 2] = w / W, (2 * x0 + w) / W - 1
        theta[:, 1, 1], theta[:, 1, 2] = h / H, (2 * y0 + h) / H - 1
        grid = F.affine_grid(theta, [B, C, H, W], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _augment(self, x: torch.Tensor, m: int, keep: slice) -> torch.Tensor:
        """Vectorised crop / flip / cutout on a uint8 batch (draws for m images, this rank's `keep` of them)."""
        B, C, H, W = x.shape
        g, dev = self._gen, x.device
        rows, cols = torch.arange(H, device=dev), torch.arange(W, device=dev)
        if self.crop:
            p = self.crop
            xp = F.pad(x, (p, p, p, p))  # pad once, then gather each sample's window
            dy = torch.randint(0, 2 * p + 1, (m,), generator=g, device=dev)[keep]
            dx = torch.randint(0, 2 * p + 1, (m,), generator=g, device=dev)[keep]
            x = xp[torch.arange(B, device=dev)[:, None, None, None],
                   torch.arange(C, device=dev)[None, :, None, None],
                   (dy[:, None] + rows)[:, None, :, None],
                   (dx[:, None] + cols)[:, None, None, :]]
        if self.flip:
            flip = torch.rand(m, generator=g, device=dev)[keep] < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        if self.cutout:
            s = self.cutout
            y0 = torch.randint(0, H, (m,), generator=g, device=dev)[keep, None] - s // 2
            x0 = torch.randint(0, W, (m,), generator=g, device=dev)[keep, None] - s // 2
            in_r = (rows >= y0) & (rows < y0 + s)
            in_c = (cols >= x0) & (cols < x0 + s)
            x = x.masked_fill((in_r[:, :, None] & in_c[:, None, :])[:, None], 0)
        return x

    def state_dict(self) -> dict:
        """Plain ints: the next epoch's batches follow from (seed, epoch) alone."""
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.seed = int(state.get("seed", self.seed))
