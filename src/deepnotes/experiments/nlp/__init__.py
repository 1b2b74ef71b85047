"""Classic NLP experiments: word vectors."""
