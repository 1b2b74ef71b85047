"""Classic NLP benchmarks: n-gram language models against nltk."""
