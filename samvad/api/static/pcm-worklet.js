// Captures microphone audio, downsamples to 16 kHz mono PCM16 and posts 100 ms frames: every
// frame costs a relay through the Serve proxy, so fewer, larger frames let one box hold many
// more live calls (bench/voice_session.py capacity), for at most 100 ms more to notice the end
// of speech (which waits 400 ms of silence anyway).
// With each frame goes `voicedUntil`: the audio-clock time of the end of the last 20 ms that was
// louder than -40 dBFS, so the page can time its answers from the caller's real end of speech.
const VOICED = Math.pow(10, -40 / 20);
class PcmCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ratio = sampleRate / 16000;
    this.pos = 0;
    this.frame = new Int16Array(1600);
    this.n = 0;
    this.energy = 0;
    this.block = 0;
    this.voicedUntil = 0;
  }
  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (!input) return true;
    for (; this.pos < input.length; this.pos += this.ratio) {
      const s = Math.max(-1, Math.min(1, input[Math.floor(this.pos)]));
      this.frame[this.n++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      this.energy += s * s;
      if (++this.block === 320) {  // 20 ms at 16 kHz
        if (Math.sqrt(this.energy / 320) > VOICED) this.voicedUntil = currentTime + this.pos / sampleRate;
        this.energy = 0;
        this.block = 0;
      }
      if (this.n === this.frame.length) {
        this.port.postMessage({ pcm: this.frame.buffer.slice(0), voicedUntil: this.voicedUntil });
        this.n = 0;
      }
    }
    this.pos -= input.length;
    return true;
  }
}
registerProcessor('pcm-capture', PcmCapture);
