"""Fixtures and helpers shared by the test suite (tests/gmm mirrors the gmm package,
tests/segment the segment package; tests/support holds the odd-file runner)."""
