"""Jardin's test suite: mirrors the packages; integration tests use the real database and real HTTP."""
