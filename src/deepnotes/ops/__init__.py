"""deepnotes.ops."""
