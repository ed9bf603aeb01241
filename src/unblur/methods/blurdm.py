"""BlurDM (He et al., NeurIPS 2025): a blur-aware diffusion prior plugged into a deblurring backbone.

Two encoders map images to a 256-d prior z: the Sharp Encoder SE(blurred, sharp) sees the
answer (training only), the Blur Encoder BE(blurred) does not. A short latent diffusion
(:mod:`unblur.diffusion.blur_diffusion`) walks from BE's latent back towards SE's with two
small estimators (blur residual and noise), and the result modulates the backbone's decoder
(x * k + v, :class:`unblur.nn.layers.PriorModulation`) where ``prior_at`` says: "input", where the
authors put it for each backbone, or "output", our first version.

Training has three stages (``stage`` picks what trains and which loss applies):
1. backbone + SE with the image loss (the prior comes from SE);
2. BE + estimators with SE frozen: latent Charbonnier loss between the T-step sample and SE's z;
3. backbone + BE + estimators with the image loss (the prior comes from the diffusion).
Inference is BE -> T reverse steps -> backbone, as in stage 3.

The prior network (``prior_net``): "authors", as their code builds it (encoders ending in LeakyReLU,
BE fed the blurred image twice, six-layer estimators ending in LeakyReLU: 2.07 M parameters for BE and
the estimators at the paper's sizes), or "v1", our first version. A key absent from a model file's config
takes the value that rebuilds our first version (``prior_at: output``, ``prior_init: identity``,
``prior_net: v1``), so files trained before these keys existed load and run as they were trained; every
config we ship sets the authors' values. docs/methods/blurdm.md cites the authors' lines for each.

Our options: ``prior_init: identity`` (the modulation starts as the identity, so BlurDM can be added to
an already trained backbone, see :meth:`BlurDM.init_backbone`); ``inference_seed`` (z_T's noise at
inference: None = 0, the mean path; an integer = one fixed draw, as the authors' seeded test scripts);
``exposure_weight`` > 0 (off by default): stages 2 and 3 also supervise every intermediate step of the
reverse chain with the physical partial exposures of the blur synthesizer (see
:meth:`BlurDM.exposure_loss` and docs/methods/blurdm.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unblur.diffusion.blur_diffusion import BlurSchedule, sample
from unblur.losses import charbonnier
from unblur.methods.base import Method
from unblur.nn import build as build_backbone
from unblur.nn.configurable import register_to_config
from unblur.nn.layers import PriorModulation, check_prior_options, eval_frozen, pad_to_multiple

#: The prior network's layouts: the authors' and our first version's (see :class:`PriorEncoder`, :class:`Estimator`).
PRIOR_NETS = ("authors", "v1")
#: Backbone arguments BlurDM sets itself (from its own ``dim``, ``prior_at``, ``prior_init``).
PRIOR_KEYS = ("prior_dim", "prior_at", "prior_init")


class ResBlock(nn.Module):
    def __init__(self, c: int, norm: bool):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1),
            nn.BatchNorm2d(c) if norm else nn.Identity(),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(c, c, 3, padding=1),
            nn.BatchNorm2d(c) if norm else nn.Identity(),
        )

    def forward(self, x):
        return x + self.body(x)


class PriorEncoder(nn.Module):
    """Images -> prior vector. ``inputs`` RGB images in [0, 1], each (B, 3, H, W), are pixel-unshuffled
    by 4 and concatenated (48 channels each), then conv -> ``blocks`` residual blocks -> convs
    c -> 2c -> 2c -> dim -> global average pool -> MLP. Returns (B, dim).
    The authors' sizes: c = 64, 6 blocks, dim = 256, two inputs (SE: blurred and sharp; BE: the blurred
    image twice); SE has BatchNorm, BE has none. ``final_act``: a LeakyReLU after the last conv and after
    the MLP, as the authors' encoder has (our first version had neither)."""

    def __init__(
        self, inputs: int, channels: int = 64, blocks: int = 6, dim: int = 256, norm: bool = False, final_act: bool = False
    ):
        super().__init__()
        c = channels
        act = nn.LeakyReLU(0.1, inplace=True)
        end = [act] if final_act else []
        self.body = nn.Sequential(
            nn.Conv2d(48 * inputs, c, 3, padding=1),
            act,
            *[ResBlock(c, norm) for _ in range(blocks)],
            nn.Conv2d(c, 2 * c, 3, padding=1),
            act,
            nn.Conv2d(2 * c, 2 * c, 3, padding=1),
            act,
            nn.Conv2d(2 * c, dim, 3, padding=1),
            *end,
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.mlp = nn.Sequential(nn.Linear(dim, dim), act, nn.Linear(dim, dim), *end)

    def pooled(self, *images: torch.Tensor) -> torch.Tensor:
        """The globally averaged features before the MLP, (B, dim)."""
        # pixel-unshuffle needs multiples of 4: replicate the last rows/columns (the pool averages anyway)
        padded = [pad_to_multiple(x, 4, mode="replicate")[0] for x in images]
        return self.body(torch.cat([F.pixel_unshuffle(x, 4) for x in padded], dim=1))

    def forward(self, *images: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.pooled(*images))


class Estimator(nn.Module):
    """An MLP on [z_blur, t / T, z_t] -> (B, dim): one for the blur residual, one for the noise.

    ``layers`` Linear layers (2d+1 -> hidden -> ... -> hidden -> dim), each followed by LeakyReLU(0.1)
    except the last unless ``final_act``. The authors': 6 layers with the final activation (Linear
    513 -> 256 and five Linear 256 -> 256, each with LeakyReLU); our first version: 3, linear output."""

    def __init__(self, dim: int = 256, hidden: int = 256, layers: int = 3, final_act: bool = False):
        super().__init__()
        if layers < 2:
            raise ValueError(f"an estimator needs at least 2 layers, got {layers}")
        sizes = [2 * dim + 1, *[hidden] * (layers - 1), dim]
        modules = []
        for i in range(layers):
            modules.append(nn.Linear(sizes[i], sizes[i + 1]))
            if i < layers - 1 or final_act:
                modules.append(nn.LeakyReLU(0.1))
        self.net = nn.Sequential(*modules)

    def forward(self, z_blur: torch.Tensor, level: torch.Tensor, z_t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z_blur, level, z_t], dim=1))


class BlurDM(Method):
    """A backbone with BlurDM's prior, as a :class:`~unblur.methods.base.Method`: ``restore(blurred)`` ->
    (B, 3, H, W) in [0, 1]; ``training_loss`` is the loss of the configured stage.

    backbone / backbone_config: any backbone of :mod:`unblur.nn` (built with ``prior_dim=dim`` and the
    prior options below).
    encoder_channels / encoder_blocks / dim / estimator_hidden: sizes (authors: 64 / 6 / 256 / 256).
    steps, alpha_end, beta_end: the :class:`BlurSchedule`. stage: 1, 2 or 3 (see the module docstring).
    prior_at: "input" (the authors' place for each backbone) or "output" (our first version).
    prior_init: "random" (the authors') or "identity" (ours: the modulation starts as the identity).
    prior_net: "authors" (their encoders and estimators) or "v1" (our first version).
    Absent from a model file, these three take the "output" / "identity" / "v1" of our first version.
    inference_seed: z_T's noise at inference (training always draws it at random): None takes ε = 0, the
    mean path; an integer takes one fixed draw from a generator seeded with it, the same for every image.
    exposure_weight: weight of :meth:`exposure_loss`, added to the loss of stage 2 or 3 (0: off, the
    authors' training; a config sets it per stage). Training then needs each sample's partial
    exposures: build the data with ``SyntheticPairs(..., exposure_fractions=model.exposure_fractions)``
    and the engine passes its ``exposures`` in the batch.
    """

    @register_to_config
    def __init__(
        self,
        backbone: str = "nafnet",
        backbone_config: dict | None = None,
        encoder_channels: int = 64,
        encoder_blocks: int = 6,
        dim: int = 256,
        estimator_hidden: int = 256,
        steps: int = 5,
        alpha_end: float = 2.0,
        beta_end: float = 0.02,
        stage: int = 3,
        exposure_weight: float = 0.0,
        prior_at: str = "output",
        prior_init: str = "identity",
        prior_net: str = "v1",
        inference_seed: int | None = None,
    ):
        super().__init__()
        check_prior_options(prior_at, prior_init)
        if prior_net not in PRIOR_NETS:
            raise ValueError(f"prior_net must be one of {PRIOR_NETS}, got {prior_net!r}")
        backbone_config = {k: v for k, v in (backbone_config or {}).items() if k not in PRIOR_KEYS}
        if exposure_weight and steps < 2:
            raise ValueError("BlurDM's exposure loss supervises the intermediate steps: it needs steps >= 2")
        self.backbone = build_backbone(
            backbone, {**backbone_config, "prior_dim": dim, "prior_at": prior_at, "prior_init": prior_init}
        )
        authors = prior_net == "authors"
        # the authors' BE is their SE's network fed the blurred image twice (96 input channels)
        self.blur_inputs = 2 if authors else 1
        self.sharp_encoder = PriorEncoder(2, encoder_channels, encoder_blocks, dim, norm=True, final_act=authors)
        self.blur_encoder = PriorEncoder(self.blur_inputs, encoder_channels, encoder_blocks, dim, final_act=authors)
        layers = 6 if authors else 3
        self.residual_net = Estimator(dim, estimator_hidden, layers, final_act=authors)
        self.noise_net = Estimator(dim, estimator_hidden, layers, final_act=authors)
        self.schedule = BlurSchedule(steps, alpha_end, beta_end)
        self.set_stage(stage)

    # -- stages -----------------------------------------------------------------------------
    def trained_parts(self) -> list[nn.Module]:
        diffusion = [self.blur_encoder, self.residual_net, self.noise_net]
        return {1: [self.backbone, self.sharp_encoder], 2: diffusion, 3: [self.backbone, *diffusion]}[self.stage]

    def set_stage(self, stage: int) -> None:
        """Freeze everything the stage does not train (frozen parts also stay in eval mode: BN statistics)."""
        if stage not in (1, 2, 3):
            raise ValueError(f"BlurDM stage must be 1, 2 or 3, got {stage}")
        self.stage = self.config["stage"] = stage
        self.requires_grad_(False)
        for part in self.trained_parts():
            part.requires_grad_(True)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            eval_frozen(self)
        return self

    @property
    def exposure_fractions(self) -> tuple[float, ...] | None:
        """The exposure fractions f_1 .. f_{T-1} whose partial exposures this stage's training takes
        (:attr:`BlurSchedule.exposure_fractions`: 0.2, 0.4, 0.6, 0.8 for the authors' schedule), or
        None when it takes none (option off, or stage 1)."""
        if not self.config["exposure_weight"] or self.stage == 1:
            return None
        # rounded: 0.6000000000000001 of a 100-point path would keep 61 points, not 60
        return tuple(round(f, 9) for f in self.schedule.exposure_fractions[1:-1].tolist())

    def init_from(self, trained: nn.Module, arch: str) -> None:
        """``train.init``: a BlurDM model file (an earlier run's) as for any method, or a plainly trained model of
        our backbone, to which BlurDM is added (:meth:`init_backbone`)."""
        if isinstance(trained, BlurDM):
            super().init_from(trained, arch)
        else:
            self.init_backbone(trained, arch)

    def init_backbone(self, trained: nn.Module, arch: str) -> None:
        """Start from a plainly trained backbone (BlurDM added to it): load its weights into ours and put
        every prior modulation at the identity, so that this model's output equals ``trained``'s until the
        prior path learns. ``trained`` must be the same architecture and size as our backbone; needs
        ``prior_init: identity`` (the authors' random modulation would change the output at once)."""
        if arch != self.config["backbone"]:
            raise ValueError(f"BlurDM on {self.config['backbone']} cannot start from a {arch} model")
        theirs = {k: v for k, v in trained.config.items() if k not in PRIOR_KEYS}
        ours = {k: v for k, v in self.backbone.config.items() if k not in PRIOR_KEYS}
        if theirs != ours:
            raise ValueError(f"the trained {arch} ({theirs}) is not the size of BlurDM's backbone ({ours})")
        if self.config["prior_init"] != "identity":
            raise ValueError("starting from a trained backbone keeps its output only with model.prior_init: identity")
        result = self.backbone.load_state_dict(trained.state_dict(), strict=False)
        if result.unexpected_keys or not all(k.startswith("priors.") for k in result.missing_keys):
            raise ValueError(f"the trained {arch}'s weights do not fit BlurDM's backbone: {result}")
        for m in self.backbone.modules():
            if isinstance(m, PriorModulation):
                m.reset_identity()

    # -- the prior and the restoration ----------------------------------------------------------
    def inference_noise(self, batch: int, device: torch.device) -> torch.Tensor | None:
        """z_T's noise at inference: None (ε = 0) or the one draw ``inference_seed`` fixes, (batch, dim)."""
        seed = self.config["inference_seed"]
        if seed is None:
            return None
        eps = torch.randn(1, self.config["dim"], generator=torch.Generator().manual_seed(seed))
        return eps.expand(batch, -1).to(device)

    def diffused_prior(self, blurred: torch.Tensor, noise: torch.Tensor | None = None, means: list | None = None) -> torch.Tensor:
        """BE(blurred) -> T reverse steps -> z_0, (B, dim). ``noise`` for z_T (training); None = mean path.
        ``means``, if a list, receives each step's noise-free estimate (see :func:`sample`)."""
        z_blur = self.blur_encoder(*[blurred] * self.blur_inputs)
        return sample(self.schedule, self.residual_net, self.noise_net, z_blur, noise, means=means)

    def exposure_loss(self, blurred: torch.Tensor, means: list, exposures: torch.Tensor | None) -> torch.Tensor:
        """Our per-step supervision: Charbonnier distance, averaged over t = 1 .. T-1, between the reverse
        chain's noise-free estimate of z_t (``means`` from :meth:`diffused_prior`, z_{T-1} .. z_0) and

            target_t = SE(blurred, B_t),  B_t = the sharp image exposed over the first f_t of the blur,

        f_t = (alpha_t - alpha_0) / (alpha_T - alpha_0) (:attr:`exposure_fractions`). SE is used as in
        stage 1, (observed blurred image, image the latent stands for): z_0's target SE(blurred, sharp)
        is the case f = 0, and the targets grow blurrier with t as the forward process does.
        ``exposures``: (B, T - 1, 3, H, W) in [0, 1], B_1 .. B_{T-1} (noise-free partial exposures,
        :class:`unblur.data.synthetic.SyntheticPairs` with ``exposure_fractions``). Returns a scalar.
        """
        n = self.schedule.steps - 1
        if exposures is None or exposures.shape[1] != n:
            raise ValueError(
                f"BlurDM's exposure loss needs the {n} partial exposures of every sample (B, {n}, 3, H, W): "
                "make the data with SyntheticPairs(..., exposure_fractions=model.exposure_fractions) and pass "
                "them as batch['exposures']"
            )
        with torch.no_grad():  # SE is frozen in stages 2 and 3
            b = blurred.shape[0]
            targets = self.sharp_encoder(blurred.repeat_interleave(n, dim=0), exposures.flatten(0, 1))
        estimates = torch.stack(means[-2::-1], dim=1)  # z_1 .. z_{T-1}: means holds z_{T-1} .. z_0
        return charbonnier(estimates, targets.unflatten(0, (b, n)))

    @torch.no_grad()
    def image_prior(self, blurred: torch.Tensor, tile: int = 512) -> torch.Tensor:
        """One prior for a whole (1, 3, H, W) image of any size, with memory bounded by ``tile``:
        BE's pooled features are averaged over tiles (weighted by area; the global average pool
        makes this the whole image's pool up to tile borders), then the MLP and the diffusion."""
        h, w = blurred.shape[-2:]
        total, area = 0.0, 0
        for y in range(0, h, tile):
            for x in range(0, w, tile):
                part = blurred[..., y : y + tile, x : x + tile]
                n = part.shape[-2] * part.shape[-1]
                total = total + self.blur_encoder.pooled(*[part] * self.blur_inputs) * n
                area += n
        z_blur = self.blur_encoder.mlp(total / area)
        return sample(self.schedule, self.residual_net, self.noise_net, z_blur, self.inference_noise(1, z_blur.device))

    # -- the method contract (see unblur.methods.base) ------------------------------------------------
    def restore(self, blurred: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        """Restore ``blurred`` (B, 3, H, W) in [0, 1] with the diffused prior (stages 2 and 3). ``prior``
        (B or 1, dim), when given, replaces the one computed from ``blurred`` (a whole image's prior for
        one of its tiles, see :meth:`image_prior`)."""
        if prior is None:
            if self.stage == 1:
                raise ValueError("BlurDM stage 1 restores with the sharp encoder's prior: it needs the sharp image")
            prior = self._sampled_prior(blurred)
        return self.backbone(blurred, prior.expand(blurred.shape[0], -1))

    def validation_output(self, blurred: torch.Tensor, sharp: torch.Tensor) -> torch.Tensor:
        """Stage 1 restores with SE's prior, which sees the sharp image; the other stages as at inference."""
        if self.stage == 1:
            return self.backbone(blurred, self.sharp_encoder(blurred, sharp))
        return self.restore(blurred)

    def training_loss(self, batch: dict[str, torch.Tensor], image_loss) -> tuple[torch.Tensor, dict[str, float]]:
        """The stage's loss: the image loss of the restoration, or in stage 2 the latent loss, plus
        ``exposure_weight`` x :meth:`exposure_loss` of ``batch["exposures"]`` when the option is on."""
        blurred, sharp = batch["blurred"], batch["sharp"]
        means = None
        if self.stage == 1:
            prior = self.sharp_encoder(blurred, sharp)
        else:
            means = [] if self.exposure_fractions is not None else None
            prior = self._sampled_prior(blurred, means)
            if self.stage == 2:
                with torch.no_grad():
                    target = self.sharp_encoder(blurred, sharp)
                return self._plus_exposure_loss(charbonnier(prior, target), blurred, means, batch.get("exposures")), {}
        # multi-scale backbones (MIMO-UNet+) are trained on every scale, as they are without BlurDM
        if self.backbone.multiscale and image_loss.multiscale:
            loss = image_loss(self.backbone(blurred, prior, all_scales=True), sharp)
        else:
            loss = image_loss(self.backbone(blurred, prior), sharp)
        return self._plus_exposure_loss(loss, blurred, means, batch.get("exposures")), {}

    def _sampled_prior(self, blurred: torch.Tensor, means: list | None = None) -> torch.Tensor:
        """:meth:`diffused_prior` from noise in training (a sample, as the authors train), otherwise from
        :meth:`inference_noise` (the mean path, or the one draw ``inference_seed`` fixes)."""
        b = blurred.shape[0]
        if self.training:
            # drawn on the CPU generator, which checkpoints save: resumed runs draw the same noise
            noise = torch.randn(b, self.config["dim"]).to(blurred.device)
        else:
            noise = self.inference_noise(b, blurred.device)
        return self.diffused_prior(blurred, noise, means)

    def _plus_exposure_loss(self, loss: torch.Tensor, blurred: torch.Tensor, means: list | None, exposures) -> torch.Tensor:
        """The stage's loss, plus the weighted exposure loss when it applies (``means`` collected)."""
        if means is None:  # option off: the authors' loss, unchanged
            return loss
        return loss + self.config["exposure_weight"] * self.exposure_loss(blurred, means, exposures)
