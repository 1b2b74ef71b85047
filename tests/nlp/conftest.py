import pytest

from deepnotes.nlp.words import corpus_sentences


@pytest.fixture(scope="session")
def kjv():
    """The tokenised KJV sentences (about 30k)."""
    return corpus_sentences("kjv")
