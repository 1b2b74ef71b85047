"""The basics: the perceptron and its bias."""
