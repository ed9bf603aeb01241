"""Diffusion schedules and samplers, apart from the networks (as diffusers keeps schedulers apart from models).

- :mod:`unblur.diffusion.schedules`: the discrete DDPM noise schedule latent diffusion trains with
  (noising, what the network predicts, the clean estimate from its prediction);
- :mod:`unblur.diffusion.samplers`: DDIM and ancestral DDPM sampling, short functions with one
  signature and a progress callback, chosen by name (k-diffusion's style);
- :mod:`unblur.diffusion.blur_diffusion`: BlurDM's dual noise-and-blur schedule and its sampler.
"""
