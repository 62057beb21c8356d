"""Sarvam AI: speech-to-text, chat, translation and text-to-speech (contracts: shared/providers.md)."""
