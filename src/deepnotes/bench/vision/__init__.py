"""Vision benchmark suites."""
