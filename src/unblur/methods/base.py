"""The method contract: what the training engine and the :class:`~unblur.restore.Restorer` call.

Every registered architecture (:data:`unblur.methods.METHODS`, and every backbone through the
:class:`~unblur.methods.regression.Regression` adapter) is a :class:`Method`. The engine and the
Restorer call only what is written here and read only the declarations below; they never inspect
signatures or look for optional attributes. ``tests/test_methods.py`` checks the contract for
every registered method.

Images are (B, 3, H, W) float tensors in [0, 1], any H and W unless a method says otherwise.

Declarations (class attributes, or properties where they depend on the configuration)
    ``generative``          the result is drawn from noise: the Restorer calls :meth:`sample` (steps, seed),
                            never :meth:`restore`; ``default_steps`` says how many steps when none are asked.
    ``predicts_kernels``    :meth:`sample` with ``kernels=True`` also returns a picture of its blur kernels.
    ``transfers_blur``      :meth:`transfer` renders one image with another's blur (``unblur transfer``).
    ``uses_target_domain``  training learns from unpaired blurred photos of a target domain when the
                            config has ``data.target`` (``batch["target"]``).
    ``exposure_fractions``  None, or the fractions f of the exposure whose partial exposures every
                            training pair must bring (``batch["exposures"]``, BlurDM's option).
    ``low_precision``       how a Restorer may run it in bf16/fp16: ``"weights"`` (cast the weights: a plain
                            network), ``"autocast"`` (parts may need fp32) or None (fp32 only: many
                            sampling steps compound rounding).
    ``anchors``             (generative methods) where :meth:`sample` may start besides pure noise, the first
                            being its default: it then takes ``strength`` and ``start`` (anchored sampling);
                            empty when it cannot (the Restorer then refuses those options).
    ``file_defaults``       constructor arguments added after model files of the method were first written,
                            with the values that rebuild such files as they were trained; applied by
                            :func:`unblur.modelfile.load_model_file` where a file's ``config`` lacks them.

Training (the engine, :mod:`unblur.train.loop`)
    :meth:`training_loss` ``(batch, image_loss) -> (loss, terms)`` on a batch dict ``{"blurred", "sharp",
    ...}`` holding what the declarations asked for; ``terms`` (name -> float) are logged beside the loss.
    :meth:`validation_output` ``(blurred, sharp)``: the restoration the engine scores.
    :meth:`init_from` ``(trained, arch)``: start from a model file's model (``train.init``).

Inference (the Restorer, :mod:`unblur.restore`)
    :meth:`restore` ``(blurred, prior=None)``: a deterministic method's result for an image or one tile;
    :meth:`image_prior` ``(blurred, tile)``: what all tiles of one image may share (BlurDM's prior), or None;
    :meth:`sample` ``(blurred, steps, generator, tile, callback, kernels)``: a generative method's result;
    with ``anchors``, also ``strength`` and ``start`` (passed only when asked for).

``forward(blurred)`` restores as validation does without the sharp image (``model(x)``), so a
method is also a plain network for tools that only call it (cost counting).

Constructor arguments are recorded with :func:`unblur.nn.configurable.register_to_config`: a model
file stores ``arch`` + ``config`` and :func:`unblur.methods.build` rebuilds the method from them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn

#: ``callback(info)`` after every sampling step; info: {"step": i (1-based), "steps": n, "t": timestep,
#: "latent": the current latent, "x0": the step's estimate of the clean latent} (see :mod:`unblur.diffusion.samplers`)
Callback = Callable[[dict], None]


class Method(nn.Module):
    """Base class of every method; see the module docstring for the contract."""

    generative: ClassVar[bool] = False
    predicts_kernels: ClassVar[bool] = False
    transfers_blur: ClassVar[bool] = False
    uses_target_domain: ClassVar[bool] = False
    low_precision: ClassVar[str | None] = "autocast"
    anchors: ClassVar[tuple[str, ...]] = ()
    file_defaults: ClassVar[dict] = {}

    @property
    def exposure_fractions(self) -> tuple[float, ...] | None:
        return None

    # -- training ----------------------------------------------------------------------------------
    def training_loss(self, batch: dict[str, torch.Tensor], image_loss) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss to minimise on ``batch`` (``blurred``, ``sharp`` and the extras the declarations ask for)
        and its separate terms for the log (may be empty). ``image_loss(pred, target)``: the configured
        image loss (:class:`unblur.losses.ImageLoss`), for methods whose loss compares images."""
        raise NotImplementedError

    def validation_output(self, blurred: torch.Tensor, sharp: torch.Tensor) -> torch.Tensor:
        """The restoration of ``blurred`` that validation scores against ``sharp``; methods that restore with
        the sharp image (BlurDM's stage 1, a VAE's reconstruction) use it, the others ignore it."""
        return self(blurred)

    def init_from(self, trained: nn.Module, arch: str) -> None:
        """Start training from ``trained``, the model of the file that ``train.init`` names (``arch``: its
        architecture). By default it must be a model of this method, its weights of the same names and
        shapes (anything else may differ: a method's training stage, say), and they are loaded as they are.
        A method that can also start from another architecture's model overrides this (BlurDM: from a
        plainly trained model of its backbone). Raises ValueError when ``trained`` cannot start this method."""
        theirs, ours = trained.state_dict(), self.state_dict()
        if type(trained) is not type(self) or theirs.keys() != ours.keys() or any(theirs[k].shape != ours[k].shape for k in ours):
            raise ValueError(f"its model ({arch}, {trained.config}) differs from the config's")
        self.load_state_dict(theirs)

    # -- inference ---------------------------------------------------------------------------------
    def forward(self, blurred: torch.Tensor) -> torch.Tensor:
        """``restore``, or for a generative method ``default_steps`` sampling steps from seed 0, whole."""
        if self.generative:
            return self.sample(blurred, self.default_steps, torch.Generator().manual_seed(0))
        return self.restore(blurred)

    def restore(self, blurred: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        """A deterministic method's restoration of ``blurred``; ``prior``: :meth:`image_prior`'s result for the
        whole image this tile belongs to (None: computed from ``blurred`` itself)."""
        raise NotImplementedError(f"{type(self).__name__} is generative: call sample()")

    def image_prior(self, blurred: torch.Tensor, tile: int) -> torch.Tensor | None:
        """What every tile of the (1, 3, H, W) image ``blurred`` may share, computed with memory bounded by
        ``tile``; None when the method has nothing to share (tiles are then restored on their own)."""
        return None

    @property
    def default_steps(self) -> int:
        """Sampling steps when none are asked for (generative methods)."""
        raise NotImplementedError(f"{type(self).__name__} is deterministic: it takes no sampling steps")

    def sample(
        self,
        blurred: torch.Tensor,
        steps: int,
        generator: torch.Generator | None = None,
        tile: int = 0,
        callback: Callback | None = None,
        kernels: bool = False,
    ):
        """A generative method's result for ``blurred``, drawn with ``steps`` sampling steps from ``generator``
        (a CPU generator: the same seed gives the same image on any device); ``tile`` > 0: large images in
        tiles of about that many pixels; ``callback``: progress after every step. With ``kernels``
        (``predicts_kernels`` only) returns (image, picture of the predicted kernels, (B, 3, H, W) in [0, 1]).

        A method with ``anchors`` also takes ``strength`` in (0, 1] and ``start`` (one of ``anchors``; both None:
        its own settings): only the last ``strength`` fraction of the steps run, from the ``start`` latent
        noised to their first timestep (1: from pure noise)."""
        raise NotImplementedError(f"{type(self).__name__} is deterministic: call restore()")

    def transfer(
        self,
        structure: torch.Tensor,
        blur: torch.Tensor,
        steps: int,
        generator: torch.Generator | None = None,
        tile: int = 0,
        callback: Callback | None = None,
    ) -> torch.Tensor:
        """``structure``'s content rendered with ``blur``'s blur pattern (``transfers_blur`` only)."""
        raise NotImplementedError(f"{type(self).__name__} cannot transfer blur")
