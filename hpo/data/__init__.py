"""Rows: reading, checking, splitting, tokenizing and batching them, and augmenting text."""
