"""deepnotes: the deep-learning systems of a set of study notes, implemented and verified."""

__version__ = "0.1.0"
