"""Tiny random-weight models and fixtures shared by tests/ and bench/ (bench imports nothing from tests/)."""
