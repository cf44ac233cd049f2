"""Learned reconstruction models: plain nn.Modules with frozen dataclass configs.

Inputs and outputs of the models are in normalised units (see each model's docstring);
conversion to and from SPEC.md radiance is the backends' job.
"""
