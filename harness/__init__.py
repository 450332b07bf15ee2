"""splitbench: measure what each split of a neural network costs on a phone."""

__version__ = "0.2.0"
