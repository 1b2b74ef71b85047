"""deepnotes.layers."""
