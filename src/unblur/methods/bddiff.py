"""BD-Diff (Cheng et al., 2025): blur-decoupled learning with two Q-Formers, and its generator.

BD-Diff conditions a latent diffusion model on two sets of tokens extracted from an image:
*structure* (what is in the scene) and *blur pattern* (how it is smeared). Each set comes from a
Q-Former: a few learned query tokens that attend to the image's feature tokens, so whatever the
image size the condition is a fixed number of tokens. A learned set of "sharp" blur tokens asks
the generator for a sharp result. The authors released no code; every choice the paper leaves
open is written down in ``docs/methods/bd-diff.md``.

Structure also has a spatial form here (our choice, see the design notes): the shared encoder's
features, read by a small head back to the latent's size, a *structure map* that the generator takes
beside its noisy latent, as the adapters of diffusion deblurring models provide their structural
condition. The blur pattern stays tokens only.

Shapes: latents (B, C, h, w) -> feature map (B, width, h/p, w/p) -> feature tokens (B, N, width) ->
query tokens (B, queries, width); structure map (B, C, h, w). The generator's cross-attention
takes ``condition(structure, blur)``, (B, structure_queries + blur_queries, width).

:class:`BDDiff` is the whole method (``arch: bd-diff-small``): a small latent diffusion model
(:func:`unblur.methods.small_sd.build_small_sd`, the VAE frozen) whose UNet reads the structure map
at its input and the tokens through cross-attention, trained on three tasks at once: deblurring,
blur transfer (supervised on synthetic pairs, unsupervised with unpaired blurred images of a target
domain) and reconstruction.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unblur.blur.synth import UniformKernelBlur
from unblur.methods.base import Callback
from unblur.methods.latent import LatentMethod
from unblur.nn.configurable import register_to_config
from unblur.nn.layers import pad_to_multiple


def sincos_2d(h: int, w: int, dim: int, device=None) -> torch.Tensor:
    """Fixed 2-D sine-cosine position codes, (h * w, dim): tokens keep their place for any image size."""
    if dim % 4:
        raise ValueError(f"width must be a multiple of 4 for 2-D position codes, got {dim}")
    quarter = dim // 4
    freq = torch.exp(-math.log(10000.0) * torch.arange(quarter, device=device) / quarter)
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    parts = [f(c.reshape(-1, 1).float() * freq) for c in (ys, xs) for f in (torch.sin, torch.cos)]
    return torch.cat(parts, dim=1)


class FeatureEncoder(nn.Module):
    """(B, C, H, W) -> feature map (B, width, H/p, W/p): a patch embedding and a few conv blocks.
    One encoder is shared by both Q-Formers and the structure map (our choice: the extractors differ
    only in what they ask)."""

    def __init__(self, in_channels: int = 4, width: int = 128, patch: int = 2, blocks: int = 2):
        super().__init__()
        self.patch = nn.Conv2d(in_channels, width, patch, stride=patch)
        self.blocks = nn.Sequential(
            *[nn.Sequential(nn.GroupNorm(8, width), nn.SiLU(), nn.Conv2d(width, width, 3, padding=1)) for _ in range(blocks)]
        )
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.patch(x)
        return y + self.blocks(y)


def as_tokens(features: torch.Tensor) -> torch.Tensor:
    """Feature map (B, width, h, w) -> (B, h * w, width) tokens with their 2-D position codes."""
    c, h, w = features.shape[1:]
    return features.flatten(2).transpose(1, 2) + sincos_2d(h, w, c, features.device).to(features.dtype)


class QFormerLayer(nn.Module):
    """Queries attend to themselves, then to the image tokens, then pass an MLP (pre-norm, residual)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.self_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, q: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        h = self.norm1(q)
        q = q + self.self_attn(h, h, h, need_weights=False)[0]
        q = q + self.cross_attn(self.norm2(q), feats, feats, need_weights=False)[0]
        return q + self.mlp(self.norm3(q))


class QFormer(nn.Module):
    """``queries`` learned tokens that read an image's feature tokens through ``layers`` attention layers."""

    def __init__(self, queries: int = 16, width: int = 128, layers: int = 2, heads: int = 4):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(1, queries, width) * 0.02)
        self.layers = nn.ModuleList(QFormerLayer(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats (B, N, width) -> (B, queries, width)."""
        q = self.queries.expand(feats.shape[0], -1, -1)
        for layer in self.layers:
            q = layer(q, feats)
        return self.norm(q)


class Reading(NamedTuple):
    """What the decoupler reads in a latent (B, C, h, w)."""

    structure_map: torch.Tensor  # (B, C, h, w): the spatial structure, the generator's input beside z_t
    structure: torch.Tensor  # (B, structure_queries, width)
    blur: torch.Tensor  # (B, blur_queries, width)


class BlurDecoupler(nn.Module):
    """The two extractors, the structure map and the "sharp" blur tokens.

    ``read(x)``: a :class:`Reading` of x (B, C, h, w), h and w multiples of ``patch``; ``blur(x)``: the
    blur tokens only; ``sharp_blur(B)``: the learned tokens that mean "no blur"; ``condition(s, b)``:
    structure and blur tokens concatenated, the generator's cross-attention context.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 4,
        width: int = 128,
        patch: int = 2,
        structure_queries: int = 32,
        blur_queries: int = 8,
        layers: int = 2,
        heads: int = 4,
    ):
        super().__init__()
        self.encoder = FeatureEncoder(in_channels, width, patch)
        self.structure_former = QFormer(structure_queries, width, layers, heads)
        self.blur_former = QFormer(blur_queries, width, layers, heads)
        # the structure map: the shared features back at the input's size (a conv, then pixel shuffle)
        self.structure_head = nn.Sequential(nn.Conv2d(width, in_channels * patch**2, 3, padding=1), nn.PixelShuffle(patch))
        self.sharp_tokens = nn.Parameter(torch.randn(1, blur_queries, width) * 0.02)
        self.patch = patch

    def read(self, x: torch.Tensor) -> Reading:
        """Structure map, structure tokens and blur tokens of x, encoding it once."""
        if x.shape[-2] % self.patch or x.shape[-1] % self.patch:
            raise ValueError(f"the decoupler reads sides that are multiples of {self.patch}, got {tuple(x.shape[-2:])}")
        features = self.encoder(x)
        tokens = as_tokens(features)
        return Reading(self.structure_head(features), self.structure_former(tokens), self.blur_former(tokens))

    def blur(self, x: torch.Tensor) -> torch.Tensor:
        return self.blur_former(as_tokens(self.encoder(x)))

    def sharp_blur(self, batch: int) -> torch.Tensor:
        return self.sharp_tokens.expand(batch, -1, -1)

    @staticmethod
    def condition(structure: torch.Tensor, blur: torch.Tensor) -> torch.Tensor:
        return torch.cat([structure, blur], dim=1)


#: the re-blurs of the decoupling regulariser: the source domain's camera-shake kernels (9-25 px), no noise
SHAKE = UniformKernelBlur()


def shake_kernels(count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``count`` camera-shake kernels (count, 25, 25), each summing to 1, drawn as the ``uniform-kernel`` preset
    draws them, from a numpy generator seeded by ``generator`` (the global one when None: the engine seeds
    and checkpoints it, so a resumed run draws the same kernels)."""
    rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
    return torch.from_numpy(np.stack([SHAKE.sample(rng)["kernel"] for _ in range(count)]))


def separation(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """d(a, p) / (d(a, p) + d(a, n)), d the mean squared difference over the batch (tensors of one shape, any):
    0 when the positive coincides with the anchor, 1/2 when it is no nearer than the negative, 1 at worst.
    It asks for "nearer than", the comparison the decoupling diagnostic makes, and scaling all three by
    one factor leaves it unchanged, so shrinking the features towards a point (which lowers a plain
    distance) gains nothing."""
    near, far = F.mse_loss(anchor.float(), positive.float()), F.mse_loss(anchor.float(), negative.float())
    return near / (near + far + eps)


def stack(*readings: Reading) -> Reading:
    """Several :class:`Reading` s as one, batch after batch."""
    return Reading(*(torch.cat(fields) for fields in zip(*readings)))


def halves(reading: Reading) -> tuple[Reading, Reading]:
    """A :class:`Reading` of a batch of 2B split into the readings of its two halves."""
    first, second = zip(*(part.chunk(2) for part in reading))
    return Reading(*first), Reading(*second)


class BDDiff(LatentMethod):
    """BD-Diff on our small latent diffusion model (``arch: bd-diff-small``): the generator renders a latent
    from a :class:`Reading`'s structure (the map at the UNet's input, the tokens in its cross-attention)
    and a set of blur tokens; the decoupler reads latents.

    Trained: the UNet and the :class:`BlurDecoupler`. Frozen: the VAE, which comes trained from its own
    stage (``vae``: the path of that stage's model file, read at construction only; the weights then
    live in this model's state dict, so ``config`` does not name the file).

    The method contract: ``training_loss`` is the weighted sum of the three task losses (:meth:`loss`) with
    each task's term for the log; :meth:`sample` deblurs (B, 3, H, W) in [0, 1], any size; :meth:`transfer`
    renders one image with another's blur; ``data.target`` crops reach the loss as ``batch["target"]``.

    Options added after ``bd-diff-small`` was trained (their defaults rebuild and train it as it was):
    ``w_paired_transfer`` weighs task 2's supervised term inside the task (0: task 2 is the unpaired
    consistency alone, as in the paper); ``w_decouple`` weighs the decoupling regulariser
    (:meth:`decoupling`); ``strength`` is where sampling starts by default (1: pure noise; below 1:
    anchored in the blurred latent, :meth:`~unblur.methods.latent.LatentMethod.render`).
    """

    transfers_blur = True
    uses_target_domain = True

    @register_to_config(ignore=("vae",))
    def __init__(
        self,
        latent_channels: int = 4,
        vae_widths=(32, 64, 128),
        unet_widths=(64, 128, 256),
        unet_heads: int = 8,
        prediction_type: str = "v_prediction",
        token_width: int = 128,
        patch: int = 2,
        structure_queries: int = 32,
        blur_queries: int = 8,
        qformer_layers: int = 2,
        qformer_heads: int = 4,
        w_deblur: float = 1.0,
        w_transfer: float = 0.5,
        w_recon: float = 0.5,
        w_consistency: float = 0.1,
        consistency_t_max: int = 500,
        val_steps: int = 10,
        latent_scale: float | None = None,
        vae: str | None = None,
        sampler: str = "ddim",
        w_paired_transfer: float = 1.0,
        w_decouple: float = 0.0,
        strength: float = 1.0,
        vae_mid_attention: bool = True,
    ):
        from unblur.methods.small_sd import build_small_sd, load_trained_vae

        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction_type must be 'epsilon' or 'v_prediction', got {prediction_type!r}")
        trained_vae = load_trained_vae(vae, latent_channels, vae_widths, vae_mid_attention) if vae else None
        # diffusers calls the number of attention heads attention_head_dim; the structure map has the latent's channels
        sd = build_small_sd(
            latent_channels,
            vae_widths,
            unet_widths,
            token_width,
            unet_heads,
            prediction_type,
            vae=trained_vae,
            condition_channels=latent_channels,
            vae_mid_attention=vae_mid_attention,
        )
        super().__init__(sd, latent_scale, val_steps, sampler, strength=strength)
        self.decoupler = BlurDecoupler(
            latent_channels, token_width, patch, structure_queries, blur_queries, qformer_layers, qformer_heads
        )
        self.weights = {"deblur": w_deblur, "transfer": w_transfer, "recon": w_recon}
        if not any(self.weights.values()):
            raise ValueError("BD-Diff: every task weight is 0")
        if w_transfer and not (w_paired_transfer or w_consistency):
            raise ValueError("BD-Diff: task 2 (w_transfer) needs w_paired_transfer or w_consistency")
        # parts no task uses are frozen: data-parallel training needs a gradient for every trained weight
        self.decoupler.sharp_tokens.requires_grad_(bool(w_deblur))
        self.decoupler.blur_former.requires_grad_(bool(w_transfer or w_recon or w_decouple))
        self.w_consistency, self.consistency_t_max = w_consistency, consistency_t_max
        self.w_paired_transfer, self.w_decouple = w_paired_transfer, w_decouple

    def generate(self, z_t: torch.Tensor, t: torch.Tensor, structure_map: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The UNet's prediction (noise or v) for z_t (B, C, h, w) at timesteps t (B,), given the structure map
        (B, C, h, w) and the cross-attention context (B, tokens, token_width)."""
        return self.unet(torch.cat([z_t, structure_map], 1), t, context).sample

    # -- training -----------------------------------------------------------------------------
    def diffusion_losses(self, tasks: dict, generator: torch.Generator | None = None) -> dict:
        """Diffusion losses of several tasks in one UNet evaluation. ``tasks``: name -> (clean latent
        (B_k, C, h, w), structure map (B_k, C, h, w), context (B_k, tokens, token_width)); returns
        name -> MSE(prediction, target)."""
        z0, maps, contexts = (torch.cat(parts) for parts in zip(*tasks.values()))
        z_t, noise, t = self.noisy(z0, generator=generator)
        pred = self.generate(z_t, t, maps, contexts)
        err = F.mse_loss(pred.float(), self.schedule.target(z0, noise, t).float(), reduction="none").mean((1, 2, 3))
        return {name: e.mean() for name, e in zip(tasks, err.split([len(z) for z, _, _ in tasks.values()]))}

    def unpaired_consistency(self, z_blur, source: Reading, b_target, generator: torch.Generator | None = None) -> torch.Tensor:
        """Task 2 without pairs: render the source's structure with the target's blur tokens in one step
        (x̂0 from the noisy synthetic blurred latent at t < ``consistency_t_max``) and ask the decoupler to
        find the target's blur and the source's structure (map and tokens) in it; the references get
        no gradient."""
        z_t, _, t = self.noisy(z_blur, self.consistency_t_max, generator)
        pred = self.generate(z_t, t, source.structure_map, self.decoupler.condition(source.structure, b_target))
        found = self.decoupler.read(self.schedule.predicted_x0(z_t, pred, t))
        pairs = ((found.blur, b_target), (found.structure, source.structure), (found.structure_map, source.structure_map))
        return sum(F.mse_loss(a.float(), b.detach().float()) for a, b in pairs)

    def loss(
        self,
        blurred: torch.Tensor,
        sharp: torch.Tensor,
        target: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The three tasks' weighted loss on synthetic pairs (B, 3, H, W) in [0, 1] and, optionally, unpaired
        blurred images ``target`` (B_t, 3, H, W) of the target domain. Terms with weight 0 are skipped.
        "structure(z)" below is z's structure map and tokens.

        1. deblur: structure(z_blur) + sharp tokens -> z_sharp;
        2. transfer: ``w_paired_transfer`` x the supervised term, structure(z_sharp) + blur(z_blur) -> z_blur
           (the synthesizer made z_blur), plus ``w_consistency`` x :meth:`unpaired_consistency` with the blur
           of ``target`` when given (the paper's unsupervised task);
        3. recon: structure(z) + blur(z) -> z for the blurred images (and the target's);
        and ``w_decouple`` x :meth:`decoupling`.
        Returns (the weighted sum, every term as a float).
        """
        w, d = self.weights, self.decoupler
        z_blur, z_sharp = self.encode(blurred), self.encode(sharp)
        paired, unpaired = w["transfer"] and self.w_paired_transfer, target is not None and w["transfer"] and self.w_consistency
        uses_target = target is not None and (w["recon"] or unpaired)
        z_target = self.encode(target) if uses_target else None
        r_blur, r_target = d.read(z_blur), (d.read(z_target) if uses_target else None)
        r_sharp = d.read(z_sharp) if paired or unpaired or self.w_decouple else None
        tasks = {}
        if w["deblur"]:
            tasks["deblur"] = (z_sharp, r_blur.structure_map, d.condition(r_blur.structure, d.sharp_blur(len(z_blur))))
        if paired:
            tasks["transfer"] = (z_blur, r_sharp.structure_map, d.condition(r_sharp.structure, r_blur.blur))
        if w["recon"]:
            z, maps, ctx = z_blur, r_blur.structure_map, d.condition(r_blur.structure, r_blur.blur)
            if z_target is not None:  # the only task that shows the generator the target domain's images
                z, maps = torch.cat([z, z_target]), torch.cat([maps, r_target.structure_map])
                ctx = torch.cat([ctx, d.condition(r_target.structure, r_target.blur)])
            tasks["recon"] = (z, maps, ctx)
        terms = self.diffusion_losses(tasks, generator) if tasks else {}
        if unpaired:
            b_target = r_target.blur[torch.arange(len(z_blur)) % len(z_target)]  # target i mod B_t for source i
            terms["consistency"] = self.unpaired_consistency(z_blur, r_sharp, b_target, generator)
        if self.w_decouple:
            terms["decouple"] = self.decoupling(sharp, r_blur, r_sharp, generator)
        if not terms:
            raise ValueError("BD-Diff: nothing to learn from this batch (task 2 alone, unpaired, needs data.target)")
        weights = {
            **w,
            "transfer": w["transfer"] * self.w_paired_transfer,
            "consistency": w["transfer"] * self.w_consistency,
            "decouple": self.w_decouple,
        }
        total = sum(weights[name] * value for name, value in terms.items())
        return total, dict(zip(terms, torch.stack(list(terms.values())).detach().tolist()))

    def decoupling(self, sharp: torch.Tensor, r_blur: Reading, r_sharp: Reading, generator=None) -> torch.Tensor:
        """Our decoupling regulariser (``w_decouple``): the structure path must not carry blur, the blur tokens
        must not carry the scene. For each scene i of ``sharp`` (B >= 2 images (B, 3, H, W) in [0, 1]) four
        views: A, the pair's blurred image (``r_blur``); S, the sharp image itself (``r_sharp``); V, the sharp image
        re-blurred by a random camera-shake kernel k_i (:func:`shake_kernels`); W, the next scene i + 1
        blurred by the same k_i. Returns the sum of :func:`separation` terms (each in [0, 1]):

        - structure map and structure tokens: V nearer A and S (one scene, other blurs) than W (one blur,
          another scene);
        - blur tokens: V nearer W (the same blur) than A and S (the same scene, other blurs).
        """
        v, w = self.reblurred(sharp, generator)
        scene, v, w = stack(r_blur, r_sharp), stack(v, v), stack(w, w)  # V against A and S, W against W
        return (
            separation(v.structure_map, scene.structure_map, w.structure_map)
            + separation(v.structure, scene.structure, w.structure)
            + separation(v.blur, w.blur, scene.blur)
        )

    def reblurred(self, sharp: torch.Tensor, generator: torch.Generator | None = None) -> tuple[Reading, Reading]:
        """The decoupler's readings of two re-blurs of ``sharp`` (B, 3, H, W) in [0, 1], B >= 2 (:meth:`decoupling`,
        ``scripts/bddiff_tokens.py``): V, each scene i blurred by its own random camera-shake kernel k_i
        (:func:`shake_kernels`, in linear light, no noise), and W, the next scene i + 1 (cyclically) by the same k_i."""
        if len(sharp) < 2:
            raise ValueError("re-blurs compare scenes: they need batches of at least 2")
        kernels = shake_kernels(len(sharp), generator).to(sharp.device).repeat(2, 1, 1)
        return halves(self.decoupler.read(self.encode(SHAKE.expose(torch.cat([sharp, sharp.roll(-1, 0)]), kernels))))

    def training_loss(self, batch: dict[str, torch.Tensor], image_loss) -> tuple[torch.Tensor, dict[str, float]]:
        """:meth:`loss` (``image_loss`` is not used: every term lives in the latent space), noise from the global
        generator, which the engine seeds and checkpoints."""
        return self.loss(batch["blurred"], batch["sharp"], batch.get("target"))

    # -- sampling -----------------------------------------------------------------------------
    def structure_predictor(self, blur_tokens):
        """The UNet's prediction for ``u = cat(z_t, z_cond)``, as :meth:`render` asks for it, conditioned on
        z_cond's structure (read per tile when tiled: a fixed number of structure tokens describes a
        region of about the training crop's size, not a whole photo) and ``blur_tokens(B)``."""
        c, d = self.unet.config.out_channels, self.decoupler

        def predict(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
            r = d.read(u[:, c:])
            return self.generate(u[:, :c], t.expand(len(u)), r.structure_map, d.condition(r.structure, blur_tokens(len(u))))

        return predict

    def predictor(self):
        """Deblurring: structure(blurred) + the learned sharp tokens."""
        return self.structure_predictor(self.decoupler.sharp_blur)

    @torch.no_grad()
    def transfer(
        self,
        structure: torch.Tensor,
        blur: torch.Tensor,
        steps: int = 20,
        generator: torch.Generator | None = None,
        tile: int = 0,
        callback: Callback | None = None,
    ) -> torch.Tensor:
        """``structure``'s content (B, 3, H, W) with ``blur``'s blur pattern ((B or 1, 3, H', W'), any size):
        (B, 3, H, W) in [0, 1], colours matched to ``structure``. Deterministic for a generator seed."""
        tokens = self.decoupler.blur(self.encode(pad_to_multiple(blur, self.multiple)[0], tile))
        predict = self.structure_predictor(lambda batch: tokens.expand(batch, -1, -1))
        return self.render_image(structure, predict, steps, generator, tile, callback)[0]
