"""Word vectors: skip-gram / CBOW with negative sampling (PyTorch) and their evaluation."""

from deepnotes.nlp.word2vec.data import W2VVocab
from deepnotes.nlp.word2vec.evaluate import (
    analogy_accuracy,
    gensim_datapath,
    nearest,
    word_similarity,
)
from deepnotes.nlp.word2vec.io import load_word2vec_format, save_word2vec_format
from deepnotes.nlp.word2vec.model import SGNS, TrainStats, Word2Vec

__all__ = [
    "SGNS",
    "TrainStats",
    "W2VVocab",
    "Word2Vec",
    "analogy_accuracy",
    "gensim_datapath",
    "load_word2vec_format",
    "nearest",
    "save_word2vec_format",
    "word_similarity",
]
