"""The three published methods, built on the shared backbones, diffusion code and training engine."""
