"""ElevenLabs: text-to-speech."""
