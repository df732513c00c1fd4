"""The Trainer owns one training step and everything a resume needs.

    trainer = build_trainer(cfg, ds, device)    # train/build.py
    trainer.on_epoch(epoch)
    for x, y in trainer.loader:
        trainer.step(x, y)
    metrics = trainer.pop_epoch()          # the one host read of the epoch's device-side sums

Nothing in `step` reads a device value back to the host. `trainer.distribute(dist, ...)` makes the
same Trainer data-parallel over torchrun's ranks (train/distributed.py).
"""
from __future__ import annotations

import torch

from .. import checkpoint as ckpt
from ..device import autocast
from ..models.info import info
from .distributed import Dist, rank_seed
from .guard import UpdateGuard
from .term_grads import TermGrads


class Trainer:
    """model: the plain module (trained, saved); net: what the objective calls (model itself, or its
    torch.compile wrapper, which shares the parameters); scored: the weights validated and saved under
    "model" (the EMA average when weight averaging is on, else the model)."""

    def __init__(self, model, objective, combiner, opt, loader, schedule, *, net=None, ema=None, bf16=False,
                 channels_last=False, device=torch.device("cpu")):
        self.model, self.net = model, net if net is not None else model
        self.objective, self.combiner, self.opt, self.loader, self.schedule, self.ema = \
            objective, combiner, opt, loader, schedule, ema
        self.device, self.bf16, self.channels_last = device, bf16, channels_last
        self.params = [p for g in opt.param_groups for p in g["params"]]
        self.term_grads = TermGrads(self.params, combiner.terms) if combiner.separate else None
        self.guard = UpdateGuard(self.params, opt, buffers=list(model.buffers()))
        self.epoch, self.lr = 0, schedule.lr()
        self._sums: dict[str, torch.Tensor] = {}
        self._seen = 0
        self.dist, self.sum_grads = Dist(), None

    def distribute(self, dist: Dist, *, seed: int = 0, sync_bn: bool = False) -> None:
        """Data-parallel over dist.world ranks (nothing changes with one process). The loader yields this
        rank's shard of each global batch; step() averages the gradients over the ranks in one all-reduce
        of a flat buffer before the combiner sees them (sum combiners: the one backward; gradient
        surgery: every term's gradient), so each rank makes the same decision and the same update.
        sync_bn: BatchNorm statistics of the global batch (SyncBatchNorm, any backend). Rank 0's weights
        are broadcast once; then each rank's torch RNG gets its own seed (attack starts, random draws)."""
        self.dist = dist
        if not dist.active:
            return
        if self.loader.batch_size % dist.world:
            raise ValueError(f"batch_size={self.loader.batch_size} is not a multiple of the {dist.world} ranks "
                             f"(batch_size is the global batch, split evenly); allowed: a multiple of {dist.world}")
        if sync_bn:
            from .sync_bn import convert_sync_batchnorm
            convert_sync_batchnorm(self.model)
        before = len(self.loader)
        self.loader.shard(dist.rank, dist.world)
        if len(self.loader) != before:  # an epoch's last batch had fewer images than ranks: the schedule counts
            self.schedule.total = max(1, round(self.schedule.total * len(self.loader) / before))
            self.schedule.steps_per_epoch = len(self.loader)
        if self.term_grads is None:  # the one backward lands in a flat buffer too, for the one all-reduce
            self.sum_grads = TermGrads(self.params, ("total",))
        dist.broadcast_([*self.model.parameters(), *self.model.buffers()]
                        + ([*self.ema.model.parameters(), *self.ema.model.buffers()] if self.ema else []))
        torch.manual_seed(rank_seed(seed, dist.rank))

    @property
    def scored(self) -> torch.nn.Module:
        return self.ema.model if self.ema else self.model

    def on_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.model.train()
        self.objective.on_epoch(epoch)
        self.combiner.on_epoch(epoch)

    def step(self, x, y):
        """objective under autocast -> gradients -> combine -> hooks -> guarded SGD step -> EMA."""
        self.lr = self.schedule.apply(self.opt)
        self.guard.begin()
        with autocast(self.device, self.bf16):
            losses, stats = self.objective(self.net, self._format(x), y)
        self.opt.zero_grad(set_to_none=True)
        total = self._gradients(losses)          # one backward (sum combiners) or per-term grads -> combine
        self.objective.after_backward(self.model)  # e.g. AWP takes its weight perturbation back
        self.combiner.after_backward(self.model)
        self.guard.step()                        # opt.step(), undone if the gradient or the result is not finite
        if self.ema:
            self.ema.update(self.model, self.epoch)
        self._accumulate(total, stats, len(y))
        return total, losses, stats

    def _gradients(self, losses):
        if self.term_grads is None:
            total = self.combiner.total_loss(losses)
            if self.sum_grads is None:
                total.backward()
            else:                                # data parallel: into the flat buffer, averaged over the ranks
                grads = self.sum_grads({"total": total})
                self._average(self.sum_grads)
                for p, g in zip(self.params, grads["total"]):
                    p.grad = g
            return total.detach()
        grads = self.term_grads(losses)          # one backward per term, into preallocated flat buffers
        if self.dist.active:
            self._average(self.term_grads)       # the global g_c, g_a (...) BEFORE the combiner decides
        for p, u in zip(self.params, self.combiner.combine(grads)):
            p.grad = u
        return self.objective.reported_loss(losses)

    def _average(self, tg: TermGrads) -> None:
        """Every term's flat gradient averaged over the ranks: one all-reduce (the shards are equal, so
        the mean of the ranks' batch means is the global batch's mean)."""
        self.dist.all_reduce_(tg.block).div_(self.dist.world)

    def _format(self, x):
        if isinstance(x, (tuple, list)):
            return type(x)(self._format(v) for v in x)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def _accumulate(self, total, stats, n: int) -> None:
        s = self._sums
        s["loss"] = s.get("loss", 0) + total.detach().float() * n
        for k, v in stats.items():
            s[k] = s.get(k, 0) + v
        self._seen += n

    def pop_epoch(self) -> dict:
        """The epoch's means (train loss, accuracies, the objective's stats), its non-finite step count
        and the combiner's diagnostics; resets the sums. One host read."""
        names = {"loss": "train_loss", "clean_correct": "train_clean_acc", "adv_correct": "train_adv_acc"}
        keys = list(self._sums)
        sums = torch.stack([torch.as_tensor(self._sums[k], dtype=torch.float64, device=self.device) for k in keys]
                           + [torch.tensor(float(self._seen), dtype=torch.float64, device=self.device),
                              self.guard.skipped.double()])
        # every rank's sums and image counts at once; the skipped-step count is the same on every rank
        vals = self.dist.all_reduce_(sums).tolist()
        seen, vals[-1] = int(vals[-2]), vals[-1] / self.dist.world
        out = {"n_train": seen, "lr": self.lr}
        out.update({names.get(k, "train_" + k): v / max(seen, 1) for k, v in zip(keys, vals)})
        out["nonfinite_steps"] = round(vals[-1])
        self._sums, self._seen = {}, 0
        self.guard.skipped.zero_()
        return out

    # -- resume
    def state_dict(self) -> dict:
        """Everything a resume needs. Data parallel: a collective (every rank calls it), gathering every
        rank's RNG state under "rng_ranks"."""
        rng = ckpt.rng_state(self.device)
        s = {"model": self.scored.state_dict(), "optimizer": self.opt.state_dict(),
             "scheduler": self.schedule.state_dict(), "loader": self.loader.state_dict(),
             "rng": rng, "model_config": info(self.model).config}
        if self.ema:
            s["model_raw"] = self.model.state_dict()
        if self.dist.active:
            s["world_size"], s["rng_ranks"] = self.dist.world, self.dist.all_gather_object(rng)
        return s

    def load_state_dict(self, s: dict) -> None:
        self.model.load_state_dict(s.get("model_raw", s["model"]))
        if self.ema:
            self.ema.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["optimizer"])
        self.guard.rebind()
        self.schedule.load_state_dict(s["scheduler"])
        self.loader.load_state_dict(s["loader"])
        world = int(s.get("world_size", 1))
        if world != self.dist.world:
            raise ValueError(f"world_size={self.dist.world} differs from the {world} rank(s) that wrote this "
                             f"checkpoint, so each rank's random stream cannot be restored; allowed: resume with "
                             + ("torchrun --nproc_per_node=... giving WORLD_SIZE=" + str(world) if world > 1
                                else "one process (no torchrun)"))
        ckpt.set_rng_state(s["rng_ranks"][self.dist.rank] if world > 1 else s["rng"], self.device)


# -- building one from a config ----------------------------------------------------------------


__all__ = ["Trainer"]
