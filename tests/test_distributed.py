"""Two data-parallel processes (torchrun, gloo on CPU) train like one process with twice the batch."""

import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

from unblur.train.checkpoint import latest_checkpoint


def run_train(folder, out, batch, nproc=None):
    settings = [
        f"data.train={folder}",
        "data.val=",
        "data.crop=32",
        f"data.batch={batch}",
        "data.workers=0",
        "model.width=8",
        "model.enc_blocks=[1,1]",
        "model.dec_blocks=[1,1]",
        "model.middle_blocks=1",
        "optim.steps=4",
        "optim.warmup=1",
        "optim.lr=1e-3",
        "train.device=cpu",
        "train.ckpt_every=2",
        "train.tensorboard=false",
        # fp32: the equivalence is exact arithmetic; bf16 kernels round differently for other batch sizes
        "train.amp=none",
    ]
    cmd = ["-m", "unblur", "train", "--out", str(out), "-q"] + [a for s in settings for a in ("--set", s)]
    if nproc:
        cmd = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] + cmd
    env = {**os.environ, "OMP_NUM_THREADS": "1", "UNBLUR_DDP_BACKEND": "gloo"}
    r = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, env=env, timeout=600, check=False)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return r


def test_two_processes_match_one_process_with_the_doubled_batch(sharp_folder, tmp_path):
    r = run_train(sharp_folder, tmp_path / "ddp", batch=2, nproc=2)
    assert r.stdout.count("trained steps") == 1  # only rank 0 reports
    run_train(sharp_folder, tmp_path / "single", batch=4)
    ddp_ckpt, single_ckpt = latest_checkpoint(tmp_path / "ddp"), latest_checkpoint(tmp_path / "single")
    assert ddp_ckpt.name == single_ckpt.name == "ckpt-00000004"
    # the replicas agreed bit for bit at every checkpoint (the engine checks and records it)
    sums = torch.load(ddp_ckpt / "state.pt", weights_only=False)["rank_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1]
    a, b = load_file(str(ddp_ckpt / "model.safetensors")), load_file(str(single_ckpt / "model.safetensors"))
    worst = max((a[k] - b[k]).abs().max().item() for k in a if a[k].is_floating_point())
    assert worst < 1e-4, worst
    # a single process with the undoubled batch ends elsewhere: the tolerance above is meaningful
    run_train(sharp_folder, tmp_path / "half", batch=2)
    c = load_file(str(latest_checkpoint(tmp_path / "half") / "model.safetensors"))
    assert max((a[k] - c[k]).abs().max().item() for k in a if a[k].is_floating_point()) > 100 * worst
