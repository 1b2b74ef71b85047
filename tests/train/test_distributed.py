"""Two gloo processes on the CPU train exactly like one process with the same global batch."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from deepnotes.data.text import TokenWindows
from deepnotes.train import TrainConfig, Trainer
from tests.helpers import assert_close
from tests.train.tiny import tiny_lm

GLOBAL_BATCH, SEQ, STEPS = 4, 16, 4


def train(mode: str, seed: int, rank: int = 0, world: int = 1, ckpt_dir: str | None = None,
          resume: str = ""):  # fmt: skip
    torch.manual_seed(seed + (1 if resume else 0))  # a resumed run must not rely on its init
    model = tiny_lm(d=32, layers=2)
    tokens = torch.randint(0, 32, (2000,), generator=torch.Generator().manual_seed(seed))
    data = TokenWindows(tokens, GLOBAL_BATCH, SEQ, seed=seed, rank=rank, world_size=world)
    cfg = TrainConfig(steps=STEPS, lr=3e-3, warmup=1, grad_accum=2, distributed=mode,
                      progress=False, ckpt_dir=ckpt_dir, ckpt_interval=2, keep_checkpoints=3,
                      resume=resume)  # fmt: skip
    tr = Trainer(model, cfg, data)
    hist = tr.fit()
    return [h["loss"] for h in hist], tr


def worker(rank: int, world: int, init_file: str, seed: int, out: str) -> None:
    torch.set_num_threads(1)
    os.environ["LOCAL_RANK"] = str(rank)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        for mode in MODES:  # one launch for both engines: process start-up dominates
            ckpt = os.path.join(out, mode)
            losses, tr = train(mode, seed, rank, world, ckpt_dir=ckpt)
            # resume from the step-2 checkpoint (sharded state gathered, then re-sharded)
            resumed, _ = train(mode, seed, rank, world, ckpt_dir=os.path.join(out, mode + "-r"),
                               resume=os.path.join(ckpt, "step-00000002"))  # fmt: skip
            result = {"losses": losses, "resumed": resumed, "tokens": tr.tokens}
            torch.save(result, os.path.join(out, f"{mode}-rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


MODES = ("ddp", "fsdp")


def test_two_processes_match_one(tmp_path, seed):
    """DDP and FSDP over 2 gloo ranks, batch 2 each, vs one process with batch 4.

    Same initial weights, same global batches, same steps (with 2-step accumulation and
    checkpoints every 2 steps): the losses agree to fp32 rounding (the reductions run in a
    different order). A run resumed from the step-2 checkpoint repeats steps 3-4 exactly.
    """
    seed = seed % 10_000
    mp.spawn(worker, args=(2, str(tmp_path / "init"), seed, str(tmp_path)), nprocs=2)
    ref, tr = train("ddp", seed)  # one process: no wrapper at all
    for mode in MODES:
        for r in (0, 1):
            got = torch.load(tmp_path / f"{mode}-rank{r}.pt")
            assert got["tokens"] == tr.tokens  # both ranks count the global batch
            assert_close(torch.tensor(got["losses"]), torch.tensor(ref), tol=1e-5,
                         what=f"{mode} rank {r} losses")  # fmt: skip
            assert got["resumed"] == got["losses"]  # history kept, steps 3-4 bit-identical
        assert (tmp_path / mode / "latest").is_file()  # rank 0 wrote a full checkpoint
