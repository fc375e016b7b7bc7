"""Diffusion models' noise schedules and samplers, kept apart from the networks that denoise
(as well-known libraries keep schedulers apart from models)."""
