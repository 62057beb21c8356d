"""Phone calls: carriers' media-stream protocols (one module each) mapped onto the voice call
the browser uses (`samvad.voice.VoiceCall`) by `bridge.PhoneSocket`."""
