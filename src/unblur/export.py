"""Regression models as ONNX graphs (`unblur export`), for runtimes other than PyTorch.

The graph takes ``blurred`` (N, 3, H, W) float32 RGB in [0, 1] and gives ``restored``, the same shape,
clamped to [0, 1]: the network plus its own padding to a multiple and cropping back, so one graph
serves every image size (H and W at least :func:`min_side`). Tiling, colour conversion and file
handling stay with the caller. The weights are exported in fp32, as they are stored.

Diffusion models are not exported: their result is a sampling loop around several networks, with a
seed and a step count, not one graph.

Needs the ``onnx`` extra (``onnx`` and ``onnxscript``, which PyTorch's exporter uses; ``onnxruntime``
to check the result).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

#: What the graph's input and output are called.
INPUT, OUTPUT = "blurred", "restored"
#: Opsets PyTorch's exporter writes directly (older ones would need a lossy version conversion).
MIN_OPSET = 18
DEFAULT_OPSET = 18


class ExportError(Exception):
    """Why a model cannot be exported: one line for the user."""


class Clamped(torch.nn.Module):
    """The network as a photo tool sees it: RGB in [0, 1] in, RGB in [0, 1] out."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, blurred: torch.Tensor) -> torch.Tensor:
        return self.model(blurred).clamp(0, 1)


def exportable(meta: dict) -> str | None:
    """None if a model file with this metadata exports, else the one-line reason it does not."""
    from unblur.methods import method_class
    from unblur.nn import BACKBONES

    arch = meta["arch"]
    if method_class(arch).generative:
        return (
            f"it is a diffusion model ({arch}): its result is a seeded sampling loop over several networks, "
            "not one graph, so it has no ONNX export (export a regression model such as nafnet-small)"
        )
    if arch not in BACKBONES and arch != "blurdm":
        return f"'{arch}' is not a deblurring network (exportable: the backbones {', '.join(BACKBONES)} and blurdm)"
    return None


def min_side(model: torch.nn.Module) -> int:
    """The smallest height and width the exported graph takes: the network reflects its input up to a
    multiple of its own, which needs at least that many pixels (and 16, as :class:`unblur.restore.Restorer`)."""
    inner = getattr(model, "backbone", model)
    return max(16, int(getattr(inner, "multiple", 1)))


def export_onnx(model: str | Path, out: str | Path, opset: int = DEFAULT_OPSET) -> dict:
    """Write ``model`` (a registered name or a model file) to ``out`` as ONNX, atomically (``out`` is
    replaced if it exists: the caller asks first). Where onnxruntime is installed the graph is run on a
    crop of a bundled sample photo before it is moved into place, and compared with PyTorch in fp32.

    Returns ``{"arch", "min_side", "opset", "max_diff"}`` (``max_diff``: the largest absolute difference
    from PyTorch, None when not checked). Raises :class:`ExportError` with a one-line reason."""
    from unblur.atomic import atomic_write
    from unblur.modelfile import read_model_meta
    from unblur.zoo import DEFAULT, load_model, resolve

    model = model or DEFAULT
    if opset < MIN_OPSET:
        raise ExportError(f"--opset must be at least {MIN_OPSET} (PyTorch's exporter writes opset {MIN_OPSET} and newer), got {opset}")
    meta = read_model_meta(resolve(model))
    reason = exportable(meta)
    if reason:
        raise ExportError(f"cannot export '{model}': {reason}")
    try:
        import onnx
        import onnxscript  # noqa: F401  (what torch.onnx.export needs; a clear message beats its own)
    except ImportError as err:
        raise ExportError(f"ONNX export needs the onnx extra: pip install 'unblur[onnx]' ({err})") from None
    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise ExportError(f"--opset must be at most {newest} (the newest the installed onnx package knows), got {opset}")
    net, meta = load_model(model, "cpu")
    side = min_side(net)
    wrapped = Clamped(net).eval()
    dynamic = torch.export.Dim.DYNAMIC  # the exporter finds the ranges (fixed minimums confuse its solver)
    example = torch.rand(2, 3, side + 3, side + 5)  # sizes that are not multiples: the padding is traced too
    try:  # the exporter prints its progress: keep the command's output to its result
        with torch.no_grad(), warnings.catch_warnings(), _quiet_loggers(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapped,
                (example,),
                dynamo=True,
                input_names=[INPUT],
                output_names=[OUTPUT],
                opset_version=opset,
                dynamic_shapes={"blurred": {0: dynamic, 2: dynamic, 3: dynamic}},
            )
    except Exception as err:  # the exporter's errors are many and long: the line that says what failed
        raise ExportError(f"PyTorch could not export '{model}' ({meta['arch']}) to ONNX: {_summary(err)}") from err
    written = program.model.opset_imports.get("")
    if written != opset:  # the exporter falls back to its own opset when it cannot convert
        raise ExportError(f"PyTorch's exporter could not write opset {opset} (it wrote {written}): try another --opset")
    props = program.model.metadata_props
    props["unblur"] = json.dumps({"arch": meta["arch"], "config": meta["config"], "min_side": side})
    props["unblur_io"] = f"{INPUT}: (N, 3, H, W) float32 RGB in [0, 1], H and W >= {side}; {OUTPUT}: same shape, in [0, 1]"
    with atomic_write(out, suffix=".onnx") as tmp:
        program.save(tmp, external_data=False)
        diff = _check(tmp, wrapped, side)
    return {"arch": meta["arch"], "min_side": side, "opset": opset, "max_diff": diff}


#: The largest absolute difference from PyTorch fp32 an export may show (float rounding is ~1e-6).
TOLERANCE = 1e-3


def _check(path: str | Path, wrapped: torch.nn.Module, side: int) -> float | None:
    """Run the graph at ``path`` with ONNX Runtime on a crop of a bundled photo whose sides are not multiples
    of anything, against ``wrapped`` in PyTorch fp32: the largest absolute difference, or None without
    onnxruntime. Raises :class:`ExportError` when the graph fails or differs by more than :data:`TOLERANCE`."""
    from unblur.demo import SAMPLES
    from unblur.io import read_image
    from unblur.restore import image_tensor

    try:
        session = onnx_session(path)
    except ExportError:
        return None
    rgb, _ = read_image(SAMPLES / "coffee-blurred.png")
    x = image_tensor(rgb[: max(99, side + 3), : max(131, side + 5)])
    with torch.no_grad():
        reference = wrapped(x).numpy()
    try:
        ours = session.run([OUTPUT], {INPUT: x.numpy()})[0]
    except Exception as err:  # onnxruntime's own error types
        raise ExportError(f"the exported graph fails in ONNX Runtime: {str(err).splitlines()[0][:300]}") from None
    diff = float(np.abs(ours - reference).max())
    if not diff <= TOLERANCE:
        raise ExportError(f"the exported graph differs from PyTorch by up to {diff:.3g} (more than {TOLERANCE:g}); not written")
    return diff


def _summary(err: BaseException) -> str:
    """One line from an exporter error: its 'Exception summary' when it has one (the first lines are advice)."""
    text = str(err.__cause__ or err) if "## Exception summary" not in str(err) else str(err)
    lines = [line.strip() for line in text.split("## Exception summary", 1)[-1].splitlines() if line.strip()]
    return (lines[0] if lines else type(err).__name__)[:300]


@contextlib.contextmanager
def _quiet_loggers():
    """The exporter logs each pass and every operator library it skips: keep the command's output to its result."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export", "onnxscript", "torch.fx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def onnx_session(path: str | Path, threads: int | None = None, spin: bool = True):
    """An ONNX Runtime CPU session for an exported graph (``threads``: intra-op threads, None: ORT's default;
    ``spin``: whether idle worker threads spin, ORT's default, which costs time on a CPU shared with other work)."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ExportError(f"running ONNX graphs needs onnxruntime: pip install 'unblur[onnx]' ({err})") from None
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
