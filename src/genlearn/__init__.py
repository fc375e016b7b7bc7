"""genlearn: generative deep learning you can train, sample, explore and evaluate."""

__version__ = "0.1.0"
