"""The training loop, readable top to bottom: build, resume, step, validate, checkpoint.

The model is a method (:mod:`unblur.methods.base`): the loop asks it for its training loss on each
batch, for the restorations validation scores, and reads what extra data it declares it needs. Runs as
one process (``unblur train``) or as N data-parallel processes under
``torchrun --nproc_per_node=N -m unblur train ...``: each process then trains on its
own slice of every step's samples (see :class:`SyntheticPairs`), DistributedDataParallel
averages the gradients, and only rank 0 validates and writes files.
"""

from __future__ import annotations

import copy
import csv
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from tqdm import tqdm

from unblur import methods
from unblur.atomic import atomic_write
from unblur.data.cache import CachedPairs
from unblur.data.root import data_path, repository_path
from unblur.data.synthetic import PairsWithTarget, SyntheticPairs, UnpairedCrops, fixed_pairs, load_folder, named_batch
from unblur.device import channels_last, data_workers, pick_device, resolve_precision
from unblur.losses import ImageLoss
from unblur.metrics import psnr_tensor, ssim
from unblur.modelfile import load_model_file, save_model_file
from unblur.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint


def lr_factor(step: int, warmup: int, steps: int, min_ratio: float) -> float:
    """Linear warm-up, then cosine decay from 1 to ``min_ratio`` at ``steps``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.state_dict().values(), model.state_dict().values()):
        if e.is_floating_point():
            e.lerp_(p, 1 - decay)
        else:
            e.copy_(p)


@torch.no_grad()
def validate(model: torch.nn.Module, blurred: torch.Tensor, sharp: torch.Tensor, device, chunk: int = 4) -> dict:
    """Mean PSNR (8-bit RGB) and SSIM (BasicSR variant) of the method ``model`` on a fixed validation batch, and
    the worst and best image's PSNR (``psnr_worst``, ``psnr_best``)."""
    model.eval()
    psnrs, ssims = [], []
    for i in range(0, len(blurred), chunk):
        target = sharp[i : i + chunk]
        out = model.validation_output(blurred[i : i + chunk].to(device), target.to(device)).float().clamp(0, 1).cpu()
        psnrs.append(psnr_tensor(out, target))
        ssims += [ssim(o.permute(1, 2, 0).numpy(), t.permute(1, 2, 0).numpy()) for o, t in zip(out, target)]
    psnrs = torch.cat(psnrs)
    return {"psnr": float(psnrs.mean()), "ssim": float(np.mean(ssims)), "psnr_worst": float(psnrs.min()), "psnr_best": float(psnrs.max())}


class TrainingLoss(torch.nn.Module):
    """A method's training loss as a module's ``forward``: DistributedDataParallel synchronises the gradients
    of what runs through the forward of the module it wraps, and a method's forward restores."""

    def __init__(self, method: torch.nn.Module, image_loss: ImageLoss):
        super().__init__()
        self.method, self.image_loss = method, image_loss

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return self.method.training_loss(batch, self.image_loss)


def worker_init(_):
    torch.set_num_threads(1)  # data workers share the cores with the training process


def distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank); joins the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(
            "nccl" if torch.cuda.is_available() and os.environ.get("UNBLUR_DDP_BACKEND") != "gloo" else "gloo"
        )
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def leave_process_group() -> None:
    """Destroy the process group :func:`distributed` joined, if any (call once training is over)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def checksums(model: torch.nn.Module, world: int) -> list[float]:
    """Each rank's sum of |parameters| (float64): data-parallel replicas must agree exactly."""
    # one reduction on the parameters' device, one transfer
    mine = torch.stack([p.detach().double().abs().sum() for p in model.parameters()]).sum().reshape(1)
    if world == 1:
        return [mine.item()]
    if dist.get_backend() != "nccl":
        mine = mine.cpu()
    everyone = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(everyone, mine)
    return [t.item() for t in everyone]


def gather_rng_states(world: int) -> list[tuple]:
    """Every rank's generator states: (CPU, current CUDA device's or None)."""
    mine = (torch.get_rng_state(), torch.cuda.get_rng_state() if torch.cuda.is_initialized() else None)
    if world == 1:
        return [mine]
    everyone = [None] * world
    dist.all_gather_object(everyone, mine)
    return everyone


class Logger:
    """CSV log (always) and TensorBoard event files (when the tensorboard package is installed)."""

    FIELDS = ("step", "loss", "lr", "val_psnr", "val_ssim", "seconds")

    def __init__(self, run_dir: Path, start: int, tensorboard: bool, quiet: bool):
        path = run_dir / "log.csv"
        fresh = start == 0 or not path.exists()
        if not fresh:  # a run killed after its last checkpoint logged steps that will now be redone
            with path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get("step") and int(r["step"]) <= start]
            with atomic_write(path) as tmp, open(tmp, "w", newline="") as f:
                out = csv.DictWriter(f, self.FIELDS, restval="", extrasaction="ignore")  # older logs: same names
                out.writeheader()
                out.writerows(rows)
        self.file = open(path, "w" if fresh else "a", newline="")  # noqa: SIM115 (closed by close())
        self.csv = csv.writer(self.file)
        if fresh:
            self.csv.writerow(self.FIELDS)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:
                if not quiet:
                    print("note: tensorboard is not installed (pip install 'unblur[train]'); logging to log.csv only")

    def write(self, row: dict, terms: dict | None = None) -> None:
        """``terms``: a method's separate loss terms (name -> mean), to TensorBoard as ``loss/<name>``."""
        self.csv.writerow([row.get(k, "") for k in self.FIELDS])
        self.file.flush()
        if self.tb is not None:
            for key in ("loss", "lr", "val_psnr", "val_ssim"):
                if row.get(key, "") != "":
                    self.tb.add_scalar(key, float(row[key]), row["step"])
            for name, value in (terms or {}).items():
                self.tb.add_scalar(f"loss/{name}", value, row["step"])
            self.tb.flush()

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


def train(cfg: dict, run_dir: str | Path, resume: str | None = None, quiet: bool = False, stop_at: int | None = None) -> dict:
    """Train the model ``cfg`` describes into ``run_dir``. Returns a summary (steps, losses, val PSNR, seconds).

    ``stop_at`` ends the run after that step with a checkpoint, as if interrupted
    there (the schedule still spans ``optim.steps``): train in chunks with ``--resume auto``.
    """
    rank, world, local_rank = distributed()
    main = rank == 0
    quiet = quiet or not main
    run_dir = Path(run_dir)
    tc, oc, dc = cfg["train"], cfg["optim"], cfg["data"]
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))  # the resolved config
    device = pick_device(tc["device"], local_rank)
    torch.manual_seed(tc["seed"])  # the same initial weights on every rank
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    # mixed precision: auto = bf16 where the hardware computes it natively, the Restorer's rule (unblur.device)
    amp = torch.float32 if tc["amp"] == "none" else resolve_precision(tc["amp"], device)
    autocast_dtype = amp if amp != torch.float32 else None
    nhwc = tc["channels_last"] if tc["channels_last"] != "auto" else device.type == "cpu"

    arch = cfg["model"]["arch"]
    model = methods.build(arch, {k: v for k, v in cfg["model"].items() if k != "arch"}).to(device)
    if tc["init"]:
        from unblur.zoo import resolve  # a registered model's name or a model file

        init, meta = load_model_file(resolve(tc["init"]))
        try:  # the method's rule (unblur.methods.base): its own weights, or another model it can start from
            model.init_from(init, meta["arch"])
        except ValueError as err:
            raise ValueError(f"train.init {tc['init']}: {err}") from None
    if nhwc:
        channels_last(model)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    # from here on the global generator draws training noise (dropout, BlurDM's z_T): different per rank
    torch.manual_seed(tc["seed"] + 1_000_003 * (rank + 1))
    optim_class = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[oc["optimizer"]]
    trainable = [p for p in model.parameters() if p.requires_grad]  # methods freeze parts per stage
    optimizer = optim_class(trainable, lr=oc["lr"], betas=tuple(oc["betas"]), weight_decay=oc["weight_decay"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, oc["warmup"], oc["steps"], oc["min_lr"] / oc["lr"] if oc["lr"] else 1.0)
    )
    scaler = torch.amp.GradScaler(enabled=autocast_dtype == torch.float16)
    image_loss = ImageLoss(cfg["loss"], device)
    if dc.get("target") and not model.uses_target_domain:
        raise ValueError(f"data.target is set but {arch} does not learn from an unpaired target domain")

    start, best = 0, -float("inf")
    ckpt = latest_checkpoint(run_dir) if resume == "auto" else (Path(resume) if resume else None)
    if ckpt is not None:
        state = load_checkpoint(ckpt, model, ema, optimizer, scheduler)
        start, best = state["step"], state.get("best", best)
        if "rng" in state:  # one pair per rank; a run resumed on other ranks reuses the first ones
            cpu_state, cuda_state = state["rng"][min(rank, len(state["rng"]) - 1)]
            torch.set_rng_state(cpu_state)
            if cuda_state is not None and device.type == "cuda":
                torch.cuda.set_rng_state(cuda_state)
        if not quiet:
            print(f"resumed from {ckpt} at step {start}")
    # wrapped after loading, so every rank starts from the same (loaded) weights
    step_loss = TrainingLoss(model, image_loss)
    net = (
        torch.nn.parallel.DistributedDataParallel(step_loss, device_ids=[local_rank] if device.type == "cuda" else None)
        if world > 1
        else step_loss
    )

    # each rank makes its slice of every step's samples: the same data as one process with world x batch
    # a method may also ask for each sample's partial exposures (BlurDM's exposure_weight): the same pairs
    folder = {key: data_path(dc[key], dc["root"]) for key in ("train", "val", "target")}  # below data.root
    folder["cache"] = repository_path(dc["cache"])  # below the repository (its gitignored .data/)
    if folder["cache"]:  # pairs synthesised once (`unblur cache`); data.preset then names the validation blur only
        if model.exposure_fractions is not None:
            raise ValueError("data.cache holds pairs only; a method that needs partial exposures synthesises them on the fly")
        train_set = CachedPairs(folder["cache"], dc["crop"], dc["batch"], tc["seed"], offset=rank * dc["batch"])
    else:
        train_set = SyntheticPairs(
            load_folder(folder["train"]),
            dc["crop"],
            dc["batch"],
            tc["seed"],
            dc["preset"],
            offset=rank * dc["batch"],
            exposure_fractions=model.exposure_fractions,
            photo_side=dc["photo_side"],
        )
    if folder["target"]:  # BD-Diff: every step also gets crops of the unpaired blurred images of a target domain
        target = UnpairedCrops(load_folder(folder["target"]), dc["crop"], dc["batch"], tc["seed"], offset=rank * dc["batch"])
        train_set = PairsWithTarget(train_set, target)
    val_images = load_folder(folder["val"])[: dc["val_images"]] if folder["val"] and main else []
    val_blur, val_sharp = fixed_pairs(val_images, dc["val_crop"], seed=1234, preset=dc["preset"]) if val_images else (None, None)
    last = min(oc["steps"], stop_at or oc["steps"])
    workers = data_workers(dc["workers"], int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    loader = torch.utils.data.DataLoader(
        train_set,
        batch_size=None,
        sampler=range(start + dc["step_offset"], last + dc["step_offset"]),
        num_workers=workers,
        worker_init_fn=worker_init,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
        # its own generator: drawing its worker seeds from the global one would shift the training
        # noise of a resumed run by one draw
        generator=torch.Generator().manual_seed(tc["seed"]),
    )
    log = Logger(run_dir, start, tc["tensorboard"], quiet) if main else None
    losses, history, terms, t0 = [], [], {}, time.time()
    bar = tqdm(total=oc["steps"], initial=start, disable=quiet, dynamic_ncols=True, desc="train", unit="step")
    net.train()
    for step, batch in enumerate(loader, start=start):
        # {"blurred", "sharp"} and the extras the method declared it needs ("exposures", "target")
        batch = {k: t.to(device, non_blocking=True) for k, t in named_batch(batch).items()}
        if nhwc:
            batch["blurred"] = batch["blurred"].contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss, step_terms = net(batch)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        if oc["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(trainable, oc["grad_clip"])
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        # EMA warm-up: early on average over fewer steps, or short runs would validate the random init.
        update_ema(ema, model, min(tc["ema"], (1 + step) / (10 + step)))
        losses.append(loss.item())
        history.append(losses[-1])
        for name, value in step_terms.items():  # a method's separate terms (BD-Diff's tasks)
            terms.setdefault(name, []).append(value)
        bar.update(1)
        done = step + 1
        row = {}
        if val_blur is not None and (done % tc["val_every"] == 0 or done == oc["steps"]):
            scores = validate(ema, val_blur, val_sharp, device)
            row = {"val_psnr": f"{scores['psnr']:.3f}", "val_ssim": f"{scores['ssim']:.4f}"}
            if scores["psnr"] > best:
                best = scores["psnr"]
                save_model_file(run_dir / "best.safetensors", ema, arch, {"step": done, "val_psnr": best})
        if main and (done % tc["log_every"] == 0 or row or done == oc["steps"]):
            mean = sum(losses) / len(losses)
            lr = scheduler.get_last_lr()[0]
            means = {name: sum(v) / len(v) for name, v in terms.items()}
            log.write(
                {"step": done, "loss": f"{mean:.6f}", "lr": f"{lr:.3e}", "seconds": f"{time.time() - t0:.1f}", **row}, means
            )
            bar.set_postfix(loss=f"{mean:.4f}", **({"val": row["val_psnr"]} if row else {}))
            losses, terms = [], {}
        if done % tc["ckpt_every"] == 0 or done in (oc["steps"], stop_at):
            sums = checksums(model, world)  # every rank takes part in the gathers
            if len(set(sums)) > 1:
                raise RuntimeError(f"data-parallel replicas diverged at step {done}: {sums}")
            rng = gather_rng_states(world)
            if main:
                extra = {"best": best, "rank_checksums": sums, "rng": rng}
                save_checkpoint(run_dir, done, model, ema, optimizer, scheduler, extra, keep=tc["keep"])
                save_model_file(run_dir / "last.safetensors", ema, arch, {"step": done})
    bar.close()
    if log is not None:
        log.close()
    if world > 1:
        dist.barrier()  # nobody leaves before rank 0 has written the last checkpoint
    return {"start": start, "steps": last, "losses": history, "best_val_psnr": best, "seconds": time.time() - t0}
