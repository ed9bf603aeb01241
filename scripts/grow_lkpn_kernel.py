"""A DeblurDiff model file with larger EAC kernels that computes exactly what the given one computes.

    python scripts/grow_lkpn_kernel.py runs/deblurdiff-f2-lkpn-anchor/last.safetensors runs/lkpn-k9-init.safetensors \
        --kernel 9 [--prior prior-f2]

The LKPN's last convolution predicts C * k * k taps per latent pixel (:func:`unblur.methods.deblurdiff_core.eac`'s
layout); growing k to k' puts each old k x k kernel at the centre of a k' x k' one whose outer taps are zero
(their weights and biases zero), so z_s, and every sample, are unchanged, and training can then use the wider
reach: a warm start for ``train.init`` instead of training the larger kernels from scratch. ``--prior``: the
component the new model names for its frozen parts (its file then holds the trained parts only); it must hold
the same weights as the given file's.
"""

import argparse

import torch

from unblur.methods import build
from unblur.modelfile import load_model_file, save_model_file


def grow(weight: torch.Tensor, channels: int, k: int, k_new: int) -> torch.Tensor:
    """(C*k*k, ...) taps in eac's layout -> (C*k_new*k_new, ...), each kernel centred, the new taps zero."""
    old = weight.reshape(channels, k, k, *weight.shape[1:])
    new = weight.new_zeros(channels, k_new, k_new, *weight.shape[1:])
    o = (k_new - k) // 2
    new[:, o : o + k, o : o + k] = old
    return new.reshape(channels * k_new * k_new, *weight.shape[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--kernel", type=int, required=True)
    ap.add_argument("--prior", default=None, help="component the new model takes its frozen UNet and VAE from")
    args = ap.parse_args()
    old, meta = load_model_file(args.model)
    k, k_new = meta["config"]["kernel_size"], args.kernel
    if k_new <= k or (k_new - k) % 2:
        raise SystemExit(f"--kernel must exceed {k} by an even number, got {k_new}")
    if old.config.get("lkpn", "small") != "small":
        raise SystemExit("only our small LKPN (lkpn: small) is grown here")
    config = {**meta["config"], "kernel_size": k_new}
    if args.prior:
        config.update(prior=args.prior, prior_digest=None)
    new = build(meta["arch"], config)
    state = {k_: v for k_, v in old.state_dict().items() if not (new.frozen_elsewhere and k_.startswith(new.FROZEN))}
    c = new.unet.config.in_channels
    for name in ("lkpn.ending.2.weight", "lkpn.ending.2.bias"):
        state[name] = grow(state[name], c, k, k_new)
    new.load_state_dict(state)
    if new.frozen_elsewhere:  # the frozen parts now come from the component: they must be the old file's
        from unblur.modelfile import weights_digest

        if weights_digest(new.unet, new.vae) != weights_digest(old.unet, old.vae):
            raise SystemExit(f"{args.prior} holds other weights than {args.model}'s UNet and VAE")
    x = torch.rand(1, 3, 64, 64)
    z = new.condition(x)
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        same = (old.anchor("zs", x, z, noise, 10) - new.anchor("zs", x, z, noise, 10)).abs().max().item()
    info = {k_: v for k_, v in meta.items() if k_ not in ("arch", "config")}
    save_model_file(args.out, new, meta["arch"], {**info, "grown_from": f"kernel {k}"})
    print(f"{args.out}: kernel {k} -> {k_new}, z_s unchanged (largest difference {same:.2e})")


if __name__ == "__main__":
    main()
