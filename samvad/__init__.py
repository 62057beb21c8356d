"""Samvad core: plain Python, no Ray imports (see DESIGN.md §2)."""

__version__ = "0.1.0"
