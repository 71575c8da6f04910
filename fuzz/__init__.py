"""Fuzz targets for Mailstead's parsers and sans-IO protocol cores (see docs/fuzzing.md)."""
