"""Layers shared by the backbones: channel LayerNorm, padding to a multiple, prior modulation of blocks."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel dimension of (B, C, H, W), per pixel."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


#: Where a backbone's prior enters (``prior_at``): "input", where the BlurDM authors put it for that backbone
#: (a block's input or its attention branch, see each backbone's docstring); "output", our first version
#: (every modulated block's output), kept so that model files trained with it load and run as trained.
PRIOR_AT = ("input", "output")
#: How the modulation starts (``prior_init``): "identity" (ours: k = 1 + k', zero-initialised, a trained
#: backbone's output unchanged until the prior path learns) or "random" (the authors': k, v straight from
#: a Linear with PyTorch's default initialisation).
PRIOR_INIT = ("identity", "random")


def check_prior_options(prior_at: str, prior_init: str) -> None:
    if prior_at not in PRIOR_AT:
        raise ValueError(f"prior_at must be one of {PRIOR_AT}, got {prior_at!r}")
    if prior_init not in PRIOR_INIT:
        raise ValueError(f"prior_init must be one of {PRIOR_INIT}, got {prior_init!r}")


class PriorModulation(nn.Module):
    """BlurDM's fusion of a prior vector into a feature map: x <- x * k + v, (k, v) = Linear(prior_dim -> 2C)(z).

    identity=False is the authors' form: k and v come straight from the Linear, which starts with
    PyTorch's default (random) initialisation. identity=True is our option: k = 1 + k' with the Linear
    zero-initialised, so a freshly added prior path is the identity and a trained backbone keeps its
    output until the prior learns something. bias: whether the Linear has one (the authors': none for
    MIMO-UNet+, Stripformer and FFTformer, one for LoFormer). x: (B, C, H, W); prior: (B, prior_dim) or
    None (no modulation).
    """

    def __init__(self, prior_dim: int, channels: int, identity: bool = True, bias: bool = True):
        super().__init__()
        self.identity = identity
        self.linear = nn.Linear(prior_dim, 2 * channels, bias=bias)
        if identity:
            self.reset_identity()

    def reset_identity(self) -> None:
        """Zero the Linear: with k = 1 + k' the modulation is then the identity."""
        nn.init.zeros_(self.linear.weight)
        if self.linear.bias is not None:
            nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None) -> torch.Tensor:
        if prior is None:
            return x
        k, v = self.linear(prior).to(x.dtype)[..., None, None].chunk(2, dim=1)
        return x * (1 + k) + v if self.identity else x * k + v


def prior_modulations(
    prior_dim: int, groups, prior_init: str = "identity", bias: bool = True
) -> nn.ModuleList | None:
    """One :class:`PriorModulation` per modulated block, grouped as the blocks are: ``groups`` lists
    (channels, number of blocks); returns ``priors[group][block]``, or None when ``prior_dim`` is 0.
    Kept apart from the blocks so that weights trained without a prior load as they are."""
    if not prior_dim:
        return None
    identity = prior_init == "identity"
    return nn.ModuleList(
        nn.ModuleList(PriorModulation(prior_dim, c, identity, bias) for _ in range(n)) for c, n in groups
    )


def run_modulated(
    blocks, x: torch.Tensor, prior: torch.Tensor | None, priors: nn.ModuleList | None, group: int, at: str = "output"
) -> torch.Tensor:
    """Apply ``blocks`` in turn, modulated by ``priors[group]`` (nothing is modulated when ``priors`` is None).

    at="output": block j's output by ``priors[group][j]`` (our first version, ``prior_at: output``);
    at="input": the input of the whole stack by ``priors[group][0]`` (MIMO-UNet+'s decoder block);
    at="inside": block j is called as ``block(x, modulate)`` and applies ``modulate`` where the authors
    put the prior (the input of its attention branch)."""
    if priors is None:
        for block in blocks:
            x = block(x)
        return x
    if at == "input":
        x = priors[group][0](x, prior)
    for j, block in enumerate(blocks):
        if at == "inside":
            x = block(x, partial(priors[group][j], prior=prior))
        else:
            x = block(x)
            if at == "output":
                x = priors[group][j](x, prior)
    return x


def eval_frozen(module: nn.Module) -> None:
    """Put every sub-module whose parameters are all frozen into eval mode, so that training a
    method leaves its frozen parts' BatchNorm statistics and dropout as they were (call after
    ``train()``); modules without parameters follow their parent."""
    for child in module.children():
        params = list(child.parameters())
        if params and not any(p.requires_grad for p in params):
            child.eval()
        else:
            eval_frozen(child)


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "reflect") -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad the bottom/right of (B, C, H, W) to multiples of ``multiple`` (reflection by default);
    returns the padded tensor and the original (H, W) to crop back to."""
    h, w = x.shape[-2:]
    # a rounded-up size minus the size, which an exporter's shape algebra sees is a multiple (and with no
    # negative division: ONNX divides integers towards zero)
    ph, pw = (h + multiple - 1) // multiple * multiple - h, (w + multiple - 1) // multiple * multiple - w
    exporting = torch.compiler.is_exporting()  # one graph for every size (ONNX): always pad, by 0 where nothing is missing
    if exporting or ph or pw:
        # reflection needs the pad to be smaller than the side: replicate for tiny inputs (an exported graph
        # takes sides of at least ``multiple``, so it always reflects)
        tiny = not exporting and not (ph < h and pw < w)
        x = F.pad(x, (0, pw, 0, ph), mode="replicate" if mode == "reflect" and tiny else mode)
    return x, (h, w)


def crop_to(y: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The top-left ``size`` (h, w) of (B, C, H, W): undoes :func:`pad_to_multiple`. When exported (ONNX) it
    gathers rows and columns instead of slicing, which would tie the graph to whether the input was padded."""
    h, w = size
    if torch.compiler.is_exporting():
        return y.index_select(-2, torch.arange(h, device=y.device)).index_select(-1, torch.arange(w, device=y.device))
    return y[..., :h, :w]
