"""Diffusion schedules and samplers shared by the methods (schedules are plain objects, samplers plain functions)."""
