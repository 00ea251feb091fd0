"""Tidy run tables: validation, preparation helpers and bundled datasets."""
