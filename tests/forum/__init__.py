"""Tests for the forum package."""
