"""Where and in which number format a model runs: device choice, precision and the cores a process may use,
for training and inference alike.

bf16 halves the memory traffic of the element-wise work that dominates small convolutional networks,
and CPUs with AVX512-BF16 or AMX also multiply in it natively (oneDNN): on such a 2-core machine the
default NAFNet runs 2-2.5x faster in bf16 than in fp32, its output 60+ dB PSNR from the fp32 one
(``docs/benchmarks/speed.md``). CPUs without them emulate bf16 slowly, so ``auto`` keeps fp32 there.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` (CUDA when available), ``cpu`` or ``cuda`` (device ``local_rank`` under torchrun)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda was asked for but no CUDA device is available")
        return torch.device("cuda", local_rank)
    return torch.device(name)


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, which containers and ``taskset`` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def data_workers(setting: int | str, processes: int = 1) -> int:
    """Data-loader processes for ``setting``: a number, or ``"auto"``: the cores left to each of ``processes``
    training processes on this machine after its own, so the model and the data share them without
    oversubscription (1 on a 2-core machine, 15 on a 16-core one, 3 per process for 4 processes on 16 cores)."""
    if setting == "auto":
        return max(0, cpu_cores() // max(1, processes) - 1)
    if not isinstance(setting, int) or isinstance(setting, bool) or setting < 0:
        raise ValueError(f"data.workers must be a number >= 0 or auto, got {setting!r}")
    return setting


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX-BF16), read from the kernel's CPU flags."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:  # not Linux: ask oneDNN (true also for slow emulated bf16 on some CPUs)
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The dtype a model computes in: ``auto`` is bf16 on CUDA and on CPUs with native bf16, else fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        native = device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())
        return torch.bfloat16 if native else torch.float32
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("fp16 is for CUDA devices; on a CPU use bf16 or fp32")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        # oneDNN has no bf16 convolution there: PyTorch's reference one runs instead, many times slower than fp32
        warnings.warn("this CPU has no native bf16 (AVX-512 BF16 or AMX): bf16 runs far slower than fp32 here", stacklevel=2)
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def channels_last(module: torch.nn.Module) -> torch.nn.Module:
    """Store the module's 4-D weights (convolutions) channels-last, in place; returns the module.

    oneDNN's CPU convolutions run 1.3-1.5x faster on NHWC data and then keep their outputs NHWC,
    so the element-wise work between them stays NHWC too. Unlike ``module.to(memory_format=...)``
    this leaves tensors of other ranks alone (FFTformer's 5-D frequency gates)."""
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.dim() == 4:
            tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    return module


@contextlib.contextmanager
def intra_op_threads(n: int):
    """PyTorch's intra-operator thread count set to ``n`` inside the block, restored after. Several tiles run
    at once with one thread each beat one tile at a time with all threads on small networks, whose many
    element-wise operators each end in a synchronisation of the threads (``Restorer`` uses this)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
