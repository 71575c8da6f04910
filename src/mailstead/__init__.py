"""Mailstead: a complete mail server in one Python package."""

__version__ = "0.1.0"
