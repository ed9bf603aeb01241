"""The physics of blur formation: kernels, camera response and synthetic pairs."""
