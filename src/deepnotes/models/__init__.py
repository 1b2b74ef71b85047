"""deepnotes.models."""
