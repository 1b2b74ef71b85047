"""N-gram language models on integer-encoded counts (numpy), with ARPA files and gram features.

from deepnotes.nlp.ngram import KneserNey
lm = KneserNey(3, min_count=2).fit(sentences)       # sentences: lists of tokens
lm.perplexity(test_sentences); lm.sample(seed); write_arpa(lm, "kjv.arpa")
"""

from deepnotes.nlp.ngram.arpa import ArpaLM, read_arpa, write_arpa
from deepnotes.nlp.ngram.features import GramFeatures
from deepnotes.nlp.ngram.models import (
    MLE,
    AbsoluteDiscounting,
    KneserNey,
    Laplace,
    Lidstone,
    ModifiedKneserNey,
    NgramLM,
    StupidBackoff,
)
from deepnotes.nlp.ngram.vocab import BOS, EOS, UNK, Vocabulary

MODELS = {
    "mle": MLE,
    "laplace": Laplace,
    "add-k": Lidstone,
    "stupid-backoff": StupidBackoff,
    "absolute-discounting": AbsoluteDiscounting,
    "kneser-ney": KneserNey,
    "modified-kneser-ney": ModifiedKneserNey,
}

__all__ = [
    "ArpaLM",
    "read_arpa",
    "write_arpa",
    "GramFeatures",
    "MLE",
    "AbsoluteDiscounting",
    "KneserNey",
    "Laplace",
    "Lidstone",
    "ModifiedKneserNey",
    "NgramLM",
    "StupidBackoff",
    "Vocabulary",
    "BOS",
    "EOS",
    "UNK",
    "MODELS",
]
