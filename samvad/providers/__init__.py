"""Provider interfaces (`base`), one folder per vendor, `local` for the offline engines."""
