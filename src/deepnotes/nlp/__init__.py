"""Classic NLP from the notes: the n-gram language model, word vectors, the perceptron.

- `tokenize`: the word tokeniser used for every corpus here (ours and the peers see the same
  tokenised sentences).
- `ngram`: counting and smoothing (MLE, add-k, stupid backoff, absolute discounting,
  interpolated and modified Kneser-Ney), ARPA files and "gram features".
- `word2vec`: skip-gram / CBOW with negative sampling, and the analogy/similarity evaluation.
- `perceptron`: the perceptron learning rule with and without a bias.
"""
