"""splitbench: measure what each split of a neural network costs on a phone."""

__version__ = "0.1.0"
