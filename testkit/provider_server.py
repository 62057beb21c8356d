"""A local fake of the Sarvam, ElevenLabs and OpenAI APIs that follows the contracts in
shared/providers.md: auth headers and their failure codes, request validation, response and
error shapes, SSE framing, and injectable faults (status + retry-after, slowness, dropped streams).

Sarvam and ElevenLabs live at the root (their paths do not overlap); OpenAI under /openai/v1.
Control: POST /_control/faults {"path": prefix, "status": 429, "times": 1, ...}, DELETE to clear,
GET /_control/calls for request counts per path.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from testkit.serving import Served

SARVAM_KEY = "sarvam-test-key"
ELEVEN_KEY = "eleven-test-key"
OPENAI_KEY = "openai-test-key"

CORE = {"hi-IN", "bn-IN", "gu-IN", "kn-IN", "ml-IN", "mr-IN", "od-IN", "pa-IN", "ta-IN", "te-IN", "en-IN"}
ALL_STT = CORE | {
    "as-IN",
    "ur-IN",
    "ne-IN",
    "kok-IN",
    "ks-IN",
    "sd-IN",
    "sa-IN",
    "sat-IN",
    "mni-IN",
    "brx-IN",
    "mai-IN",
    "doi-IN",
}
V2 = {"anushka", "manisha", "vidya", "arya", "abhilash", "karun", "hitesh"}
V3 = set(
    "shubh aditya ritu priya neha rahul pooja rohan simran kavya amit dev ishita shreya ratan varun manan sumit roopa "
    "kabir aayan ashutosh advait anand tanya tarun sunny mani gokul vijay shruti suhani mohit kavitha rehan soham "
    "rupali".split()
)
ELEVEN_VOICES = {"21m00Tcm4TlvDq8ikWAM", "voice-hi-1"}
ELEVEN_MODELS = {
    "eleven_multilingual_v2",
    "eleven_flash_v2_5",
    "eleven_turbo_v2_5",
    "eleven_v3",
    "eleven_flash_v2",
    "eleven_turbo_v2",
}
ELEVEN_FORMATS = {
    "mp3_22050_32",
    "mp3_24000_48",
    "mp3_44100_32",
    "mp3_44100_64",
    "mp3_44100_96",
    "mp3_44100_128",
    "mp3_44100_192",
    "pcm_8000",
    "pcm_16000",
    "pcm_22050",
    "pcm_24000",
    "pcm_32000",
    "pcm_44100",
    "pcm_48000",
    "ulaw_8000",
    "alaw_8000",
    "opus_48000_32",
    "opus_48000_64",
    "opus_48000_96",
    "opus_48000_128",
    "opus_48000_192",
}


@dataclass
class Fault:
    path: str
    status: int = 503
    times: int = 1
    retry_after: str | None = None
    retry_after_ms: str | None = None
    code: str | None = None
    delay_s: float = 0.0
    drop_after_bytes: int | None = None  # streams: cut the connection after this many bytes


@dataclass
class State:
    faults: list[Fault] = field(default_factory=list)
    calls: Counter = field(default_factory=Counter)
    transcript: str = "how do i block my debit card"
    spoken_language: str = "en-IN"  # what the speech is in: reported when language_code is "unknown"
    answer: str = "Block your card in the app. You can also call the helpline. A new card costs Rs. 200."
    eleven_bodies: list = field(default_factory=list)  # the JSON bodies ElevenLabs TTS received, in order
    realtime_hangs: bool = False  # the realtime STT socket takes audio but never finalises (a stuck service)


def _rid() -> str:
    return f"{time.strftime('%Y%m%d')}_{uuid.uuid4()}"


def sarvam_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "code": code, "request_id": _rid()}}, status_code=status)


def eleven_error(status: int, type_: str, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"detail": {"type": type_, "code": code, "message": message, "status": code, "request_id": uuid.uuid4().hex}},
        status_code=status,
    )


def openai_error(status: int, type_: str, code: str | None, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": type_, "param": None, "code": code}},
        status_code=status,
        headers={"x-request-id": f"req_{uuid.uuid4().hex}"},
    )


def tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.2 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2")


def wav(samples: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def speech_for(text: str, rate: int) -> np.ndarray:
    return tone(max(0.2, 0.05 * len(text)), rate)


# --- Sarvam ----------------------------------------------------------------------------------
def sarvam_auth(request: Request) -> JSONResponse | None:
    key = request.headers.get("api-subscription-key")
    bearer = request.headers.get("authorization", "")
    if key == SARVAM_KEY or bearer == f"Bearer {SARVAM_KEY}":
        return None
    return sarvam_error(403, "invalid_api_key_error", "Invalid API key or subscription key")


async def sarvam_stt(request: Request) -> Response:
    form = await request.form()
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        return sarvam_error(422, "unprocessable_entity_error", "file: field required")
    model = form.get("model", "saaras:v3")
    if model not in {"saaras:v3", "saaras:v4", "saarika:v2.5"}:
        return sarvam_error(400, "invalid_request_error", f"model {model} is not supported")
    mode = form.get("mode", "transcribe")
    if mode not in {"transcribe", "translate", "verbatim", "translit", "codemix"}:
        return sarvam_error(400, "invalid_request_error", f"invalid mode {mode}")
    keyterms = form.get("keyterms")
    if keyterms not in (None, "null"):  # the 0.1.39 SDK always sends keyterms=null
        try:
            terms = json.loads(keyterms)
        except ValueError:
            return sarvam_error(400, "invalid_request_error", "keyterms must be a JSON array")
        if model != "saaras:v4" or not isinstance(terms, list) or len(terms) > 50:
            return sarvam_error(400, "invalid_request_error", "keyterms: at most 50 terms, saaras:v4 only")
    data = await upload.read()
    try:
        info = sf.info(io.BytesIO(data))
    except Exception:  # noqa: BLE001
        return sarvam_error(400, "invalid_request_error", "could not decode the audio file")
    if info.duration > 30:
        return sarvam_error(400, "invalid_request_error", "Audio duration exceeds the maximum limit of 30 seconds")
    language = form.get("language_code", "unknown")
    if language != "unknown" and language not in ALL_STT:
        return sarvam_error(400, "invalid_request_error", f"invalid language_code {language}")
    body = {
        "request_id": _rid(),
        "transcript": request.app.state.fake.transcript,
        "language_code": request.app.state.fake.spoken_language if language == "unknown" else language,
        "language_probability": 0.97 if language == "unknown" else None,
    }
    if form.get("with_timestamps") == "true":
        body["timestamps"] = {
            "words": [body["transcript"]],
            "start_time_seconds": [0.0],
            "end_time_seconds": [info.duration],
        }
    return JSONResponse(body)


def _tts_validate(body: dict, limit_v3: int) -> tuple[JSONResponse | None, dict]:
    text = body.get("text")
    language = body.get("language_code") or body.get("target_language_code")  # both names are in use
    model = body.get("model", "bulbul:v3")
    if not isinstance(text, str) or not text.strip():
        return sarvam_error(422, "unprocessable_entity_error", "text: field required"), {}
    if language not in CORE:
        return sarvam_error(400, "invalid_request_error", f"invalid language_code {language}"), {}
    if model not in {"bulbul:v2", "bulbul:v3", "bulbul:v4-flash"}:
        return sarvam_error(400, "invalid_request_error", f"model {model} is not supported"), {}
    limit = 1500 if model == "bulbul:v2" else limit_v3
    if len(text) > limit:
        return sarvam_error(400, "invalid_request_error", f"text exceeds {limit} characters for {model}"), {}
    speaker = body.get("speaker", {"bulbul:v2": "anushka", "bulbul:v3": "shubh"}.get(model, "shubh_enhi_ads"))
    valid = V2 if model == "bulbul:v2" else V3 if model == "bulbul:v3" else None
    if (valid is not None and speaker not in valid) or (valid is None and speaker.count("_") < 2):
        return sarvam_error(400, "invalid_request_error", f"speaker {speaker} is not compatible with {model}"), {}
    if model != "bulbul:v2" and (body.get("pitch") not in (None, 0, 0.0) or body.get("loudness") not in (None, 1, 1.0)):
        return sarvam_error(400, "invalid_request_error", "pitch and loudness are supported on bulbul:v2 only"), {}
    rate = int(body.get("speech_sample_rate") or 22050)
    if rate not in {8000, 16000, 22050, 24000, 32000, 44100, 48000}:
        return sarvam_error(400, "invalid_request_error", f"invalid speech_sample_rate {rate}"), {}
    return None, {"text": text, "rate": rate, "codec": body.get("output_audio_codec", "wav")}


async def sarvam_tts(request: Request) -> Response:
    error, ok = _tts_validate(await request.json(), 2500)
    if error:
        return error
    if ok["codec"] not in {"wav", "linear16"}:
        return sarvam_error(400, "invalid_request_error", f"this fake serves wav and linear16, not {ok['codec']}")
    samples = speech_for(ok["text"], ok["rate"])
    audio = wav(samples, ok["rate"]) if ok["codec"] == "wav" else samples.tobytes()
    return JSONResponse({"request_id": _rid(), "audios": [base64.b64encode(audio).decode()]})


async def sarvam_tts_stream(request: Request) -> Response:
    error, ok = _tts_validate(await request.json(), 3500)
    if error:
        return error
    codec = ok["codec"]
    if codec not in {"wav", "linear16"}:
        return sarvam_error(400, "invalid_request_error", f"this fake streams wav and linear16, not {codec}")
    samples = speech_for(ok["text"], ok["rate"])
    payload = wav(samples, ok["rate"]) if codec == "wav" else samples.tobytes()
    return stream_bytes(request, payload, "audio/wav" if codec == "wav" else "audio/pcm")


async def sarvam_translate(request: Request) -> Response:
    body = await request.json()
    text, source, target = body.get("input"), body.get("source_language_code"), body.get("target_language_code")
    model, mode = body.get("model", "mayura:v1"), body.get("mode", "formal")
    if not isinstance(text, str) or not text or source is None or target is None:
        return sarvam_error(
            422, "unprocessable_entity_error", "input, source_language_code and target_language_code are required"
        )
    limit = 1000 if model == "mayura:v1" else 2000
    if len(text) > limit:
        return sarvam_error(400, "invalid_request_error", f"input exceeds {limit} characters for {model}")
    if model != "mayura:v1" and (source == "auto" or mode != "formal" or body.get("output_script")):
        return sarvam_error(400, "invalid_request_error", "auto source, modes and output_script need mayura:v1")
    langs = CORE if model == "mayura:v1" else ALL_STT
    if target not in langs or (source != "auto" and source not in langs):
        return sarvam_error(400, "invalid_request_error", "unsupported language code")
    if mode not in {"formal", "modern-colloquial", "classic-colloquial", "code-mixed"}:
        return sarvam_error(400, "invalid_request_error", f"invalid mode {mode}")
    script = body.get("output_script")
    tag = f"{target}|{mode}" + (f"|{script}" if script else "")
    return JSONResponse(
        {
            "request_id": _rid(),
            "translated_text": f"[{tag}] {text}",
            "source_language_code": "en-IN" if source == "auto" else source,
        }
    )


async def sarvam_lid(request: Request) -> Response:
    text = (await request.json()).get("input", "")
    if not text or len(text) > 1000:
        return sarvam_error(400, "invalid_request_error", "input must be 1 to 1000 characters")
    # As the service reports it (providers.md §6): the language, and the script it is written in,
    # so romanised Hindi or Tamil is hi-IN / ta-IN in Latn. Native scripts by their Unicode block;
    # Latin text by a few very common romanised words (the real model is a classifier).
    for lang, script, block in LID_SCRIPTS:
        if re.search(block, text):
            return JSONResponse({"request_id": _rid(), "language_code": lang, "script_code": script})
    words = set(re.findall(r"[a-z]+", text.lower()))
    lang = next((lang for lang, common in LID_ROMANISED.items() if len(words & common) >= 2), "en-IN")
    return JSONResponse({"request_id": _rid(), "language_code": lang, "script_code": "Latn"})


LID_SCRIPTS = [
    ("hi-IN", "Deva", r"[\u0900-\u097F]"),
    ("bn-IN", "Beng", r"[\u0980-\u09FF]"),
    ("pa-IN", "Guru", r"[\u0A00-\u0A7F]"),
    ("gu-IN", "Gujr", r"[\u0A80-\u0AFF]"),
    ("od-IN", "Orya", r"[\u0B00-\u0B7F]"),
    ("ta-IN", "Taml", r"[\u0B80-\u0BFF]"),
    ("te-IN", "Telu", r"[\u0C00-\u0C7F]"),
    ("kn-IN", "Knda", r"[\u0C80-\u0CFF]"),
    ("ml-IN", "Mlym", r"[\u0D00-\u0D7F]"),
]
LID_ROMANISED = {
    "hi-IN": set("mera meri hai hain kya kaise nahi gaya karna karu kho".split()),
    "ta-IN": set("enna epdi illa enakku ungal naan panna vendum irukku en".split()),
}


# --- chat (Sarvam /v1 and OpenAI) ----------------------------------------------------------
SARVAM_V1_MODELS = ("sarvam-105b", "sarvam-105b-conversations")  # providers.md §8.1, re-read 2026-11-29
REASONING = "The caller asks about a card. Passage one answers it, so I quote it briefly."


async def chat(request: Request, provider: str) -> Response:
    """Sarvam v1 is a reasoning model: it streams `reasoning_content` before the answer and counts
    those tokens against `max_tokens` (a short limit stops the answer: finish_reason "length"); its
    stream carries no usage (v1 has no stream_options). OpenAI streams usage when asked."""
    body = await request.json()
    err = (
        (lambda s, c, m: sarvam_error(s, c, m))
        if provider == "sarvam"
        else (lambda s, c, m: openai_error(s, "invalid_request_error", c, m))
    )
    model, messages = body.get("model"), body.get("messages")
    if not model or not isinstance(messages, list) or not messages:
        return err(400, "invalid_request_error", "model and messages are required")
    if provider == "sarvam" and model not in SARVAM_V1_MODELS:
        return err(
            400, "invalid_request_error", f"model {model} is not supported; use one of: {', '.join(SARVAM_V1_MODELS)}"
        )
    thinking = REASONING.split(" ") if provider == "sarvam" else []
    words = request.app.state.fake.answer.split(" ")
    limit = body.get("max_tokens") or body.get("max_completion_tokens")
    finish = "stop"
    if limit is not None and len(thinking) + len(words) > limit:  # one token a word, reasoning first
        thinking, words, finish = thinking[:limit], words[: max(0, limit - len(thinking))], "length"
    answer = " ".join(words)
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
    completion = len(thinking) + len(words)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": len(thinking)},
    }
    cid, created = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time())
    if not body.get("stream"):
        message = {"role": "assistant", "content": answer, "refusal": None}
        if thinking:
            message["reasoning_content"] = " ".join(thinking)
        return JSONResponse(
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": usage,
            }
        )

    def chunk(delta: dict, finish: str | None = None, **extra) -> bytes:
        data = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            "usage": None,
            **extra,
        }
        return f"data: {json.dumps(data)}\n\n".encode()  # "data: " with the space: Sarvam's SDK needs it

    parts = [chunk({"role": "assistant", "content": ""})]
    parts += [chunk({"reasoning_content": w + " "}) for w in thinking]
    parts += [chunk({"content": w + " "}) for w in words if w]
    parts.append(chunk({}, finish))
    if provider == "openai" and (body.get("stream_options") or {}).get("include_usage"):
        last = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage,
        }
        parts.append(f"data: {json.dumps(last)}\n\n".encode())
    parts.append(b"data: [DONE]\n\n")
    return stream_parts(request, parts, "text/event-stream")


async def sarvam_chat(request: Request) -> Response:
    return await chat(request, "sarvam")


async def openai_chat(request: Request) -> Response:
    if request.headers.get("authorization") != f"Bearer {OPENAI_KEY}":
        return openai_error(401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided")
    return await chat(request, "openai")


# --- ElevenLabs ------------------------------------------------------------------------------
async def eleven_tts(request: Request) -> Response:
    if request.headers.get("xi-api-key") != ELEVEN_KEY:
        return eleven_error(401, "authentication_error", "invalid_api_key", "Invalid API key")
    voice = request.path_params["voice_id"]
    if voice not in ELEVEN_VOICES:
        return eleven_error(404, "not_found", "voice_not_found", f"voice {voice} was not found")
    fmt = request.query_params.get("output_format", "mp3_44100_128")
    streaming = request.url.path.endswith("/stream")
    if fmt not in ELEVEN_FORMATS and not (not streaming and fmt.startswith("wav_")):
        return eleven_error(400, "validation_error", "invalid_output_format", f"output_format {fmt} is not supported")
    body = await request.json()
    request.app.state.fake.eleven_bodies.append(body)
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        return eleven_error(400, "validation_error", "empty_text", "text must not be empty")
    model = body.get("model_id", "eleven_multilingual_v2")
    if model not in ELEVEN_MODELS:
        return eleven_error(404, "not_found", "model_not_found", f"model {model} was not found")
    if "language_code" in body and model == "eleven_multilingual_v2":
        return eleven_error(
            400, "validation_error", "unsupported_model", "language_code is not supported by this model"
        )
    vs = body.get("voice_settings") or {}
    ranges = {"stability": (0, 1), "similarity_boost": (0, 1), "style": (0, 1), "speed": (0.7, 1.2)}
    if any(k in vs and not lo <= vs[k] <= hi for k, (lo, hi) in ranges.items()):
        return eleven_error(400, "validation_error", "invalid_voice_settings", "voice_settings out of range")
    for context in ("previous_text", "next_text"):
        if context in body and not isinstance(body[context], str):
            return eleven_error(400, "validation_error", "invalid_parameters", f"{context} must be a string")
    if len(text) > 40000:
        return eleven_error(400, "validation_error", "text_too_long", "text is too long for this model")
    codec, _, rest = fmt.partition("_")
    rate = int(rest.split("_")[0])
    samples = speech_for(text, rate)
    if codec == "pcm":
        payload, media = samples.tobytes(), "audio/pcm"  # raw 16-bit little-endian mono, no header
    elif codec == "wav":
        payload, media = wav(samples, rate), "audio/wav"
    else:  # the fake has no encoder: placeholder frames that only stand in for mp3/opus/ulaw bytes
        payload, media = b"\xff\xfb\x90\x00" * (len(samples) // 64), "audio/mpeg"
    if streaming:
        return stream_bytes(request, payload, media)
    return Response(payload, media_type=media)


# --- Sarvam streaming STT (legacy socket, providers.md §9) ---------------------------------------
PAUSE_S = 0.5  # silence that separates two utterance segments (the service's VAD)


def _segments(samples: np.ndarray, rate: int) -> list[tuple[float, float]]:
    """(start, end) seconds of each run of speech, split at pauses of PAUSE_S or more."""
    frame = rate // 50  # 20 ms
    n = len(samples) // frame
    if n == 0:
        return []
    energy = (samples[: n * frame].astype(np.float32).reshape(n, frame) ** 2).mean(axis=1)
    loud = energy > (0.01 * 32768) ** 2
    out, start, quiet = [], None, 0
    for i, voiced in enumerate(loud):
        if voiced:
            start = i if start is None else start
            quiet = 0
        elif start is not None:
            quiet += 1
            if quiet * 0.02 >= PAUSE_S:
                out.append((start * 0.02, (i - quiet + 1) * 0.02))
                start, quiet = None, 0
    if start is not None:
        out.append((start * 0.02, (n - quiet) * 0.02))
    return out


def _split_words(text: str, parts: int) -> list[str]:
    words = text.split()
    size = -(-len(words) // parts) if parts else 0
    return [" ".join(words[i * size : (i + 1) * size]) for i in range(parts)]


async def sarvam_stt_ws(ws: WebSocket) -> None:
    key = ws.headers.get("api-subscription-key")
    if key != SARVAM_KEY:
        # The SDK reads a 401 on the upgrade as bad credentials.
        await ws.send_denial_response(Response("invalid API key", status_code=401))
        return
    language = ws.query_params.get("language-code")  # hyphenated, as the SDK spells it
    if language is None or (language != "unknown" and language not in ALL_STT):
        await ws.send_denial_response(Response("invalid language-code", status_code=400))
        return
    rate = int(ws.query_params.get("sample_rate", "16000"))
    signals = ws.query_params.get("vad_signals") == "true"
    flushable = ws.query_params.get("flush_signal") == "true"  # without it a flush is ignored (§9)
    await ws.accept()
    pcm = []

    async def send(kind: str, data: dict) -> None:
        await ws.send_text(json.dumps({"type": kind, "data": data}))

    try:
        while True:
            msg = json.loads(await ws.receive_text())
            if "audio" in msg:
                audio = msg["audio"]
                data = base64.b64decode(audio["data"])
                if audio.get("encoding") != "audio/wav":
                    await send("error", {"error": "encoding must be audio/wav", "code": "invalid_encoding"})
                    continue
                if data[:4] == b"RIFF":
                    samples, _ = sf.read(io.BytesIO(data), dtype="int16")
                else:  # raw PCM16 at the socket's sample rate
                    samples = np.frombuffer(data, dtype="<i2")
                pcm.append(samples)
            elif msg.get("type") == "flush" and flushable:
                # One final transcript per utterance segment (the transcript's words spread over
                # them), each after its END_SPEECH when vad_signals is on; nothing for silence.
                audio = np.concatenate(pcm) if pcm else np.zeros(0, dtype=np.int16)
                segments = _segments(audio, rate)
                for (start, end), words in zip(
                    segments, _split_words(ws.app.state.fake.transcript, len(segments)), strict=True
                ):
                    if signals:
                        await send("events", {"signal_type": "START_SPEECH", "occured_at": time.time()})
                        await send("events", {"signal_type": "END_SPEECH", "occured_at": time.time()})
                    await send(
                        "data",
                        {
                            "request_id": _rid(),
                            "transcript": words,
                            "language_code": ws.app.state.fake.spoken_language if language == "unknown" else language,
                            "language_probability": 0.97 if language == "unknown" else None,
                            "timestamps": None,
                            "diarized_transcript": None,
                            "metrics": {"audio_duration": round(end - start, 3), "processing_latency": 0.01},
                        },
                    )
                pcm = []
    except WebSocketDisconnect:
        return


# --- Sarvam realtime STT socket (providers.md §11) -----------------------------------------------
REALTIME_LANGUAGES = (ALL_STT - {"od-IN"}) | {"or-IN"}  # this socket spells Odia or-IN
REALTIME_QUERY = {
    "model": {"saaras:v3-realtime", "saaras:v4"},
    "stream_type": {"fast", "balanced", "simulated"},
    "mode": {"transcribe", "translate", "verbatim", "translit", "codemix"},
    "endpointing": {"vad", "manual"},
    "encoding": {"linear16", "linear32", "mulaw", "alaw"},
    "sample_rate": {"8000", "16000"},
}
PARTIAL_EVERY_S = {"fast": 0.2, "balanced": 0.4}  # speech between two partials; `simulated` sends none


async def sarvam_stt_realtime_ws(ws: WebSocket) -> None:
    fake = ws.app.state.fake
    protocols = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    via_protocol = next((p for p in protocols if p.startswith("api-subscription-key.")), None)
    key = ws.headers.get("api-subscription-key") or (via_protocol or "").removeprefix("api-subscription-key.")
    await ws.accept(subprotocol=via_protocol)  # the browser form: the server echoes the subprotocol
    if key != SARVAM_KEY:
        await ws.close(1003, "invalid API key")
        return
    q = {k: ws.query_params.get(k) for k in ("language_code", *REALTIME_QUERY)}
    q = {
        "model": "saaras:v3-realtime",
        "stream_type": "balanced",
        "mode": "transcribe",
        "endpointing": "vad",
        "encoding": "linear16",
        "sample_rate": "16000",
    } | {k: v for k, v in q.items() if v is not None}
    language = q.get("language_code")
    if language is None or (language != "auto" and language not in REALTIME_LANGUAGES):
        await ws.close(4000, f"invalid language_code {language}"[:123])
        return
    for name, allowed in REALTIME_QUERY.items():
        if q[name] not in allowed:
            await ws.close(4000, f"invalid {name}: {q[name]}"[:123])
            return
    rate, manual = int(q["sample_rate"]), q["endpointing"] == "manual"
    detected = "or-IN" if fake.spoken_language == "od-IN" else fake.spoken_language
    spoken = detected if language == "auto" else language
    words = fake.transcript.split()
    every = PARTIAL_EVERY_S.get(q["stream_type"])
    rid, opened = _rid(), time.monotonic()
    received_s, utterance, in_speech, speech_s, quiet_s, partials = 0.0, 0, False, 0.0, 0.0, 0

    async def send(event: str, **body) -> None:
        await ws.send_text(json.dumps({"event": event, **body}))

    async def error(code: str, message: str, fatal: bool = False) -> None:
        await send("error", code=code, is_fatal=fatal, message=message)

    async def final() -> None:
        nonlocal utterance, in_speech, speech_s, partials
        if fake.realtime_hangs:
            return
        body = {"utterance_idx": utterance, "text": fake.transcript if speech_s > 0 else ""}
        if language == "auto":
            body |= {"language": spoken, "language_confidence": 0.93}
        await send("transcript.final", **body)
        utterance, in_speech, speech_s, partials = utterance + 1, False, 0.0, 0

    await send("session.begin", request_id=rid, config={**q, "turn_detection": q["endpointing"]})
    try:
        while True:
            msg = json.loads(await ws.receive_text())
            event = msg.get("event")
            if event == "audio_input":
                try:
                    data = base64.b64decode(msg["audio"], validate=True)
                except (KeyError, ValueError):
                    await error("invalid_audio", "audio must be base64")
                    continue
                samples = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")  # linear16
                seconds = len(samples) / rate
                received_s += seconds
                loud = len(samples) > 0 and float(np.sqrt(np.mean(samples.astype(np.float32) ** 2))) > 0.01 * 32768
                if not manual:  # the service's own VAD: speech starts loud, ends after a pause
                    if loud and not in_speech:
                        in_speech = True
                        await send("vad.speech_start", utterance_idx=utterance)
                    quiet_s = 0.0 if loud else quiet_s + seconds
                if in_speech:
                    speech_s += seconds
                    if every and int(speech_s / every) > partials and len(words) > 1:
                        partials = int(speech_s / every)
                        body = {"utterance_idx": utterance, "text": " ".join(words[: min(partials, len(words) - 1)])}
                        await send("transcript.partial", **body | ({"language": spoken} if language == "auto" else {}))
                    if not manual and quiet_s >= 0.5:
                        await send("vad.speech_end", utterance_idx=utterance)
                        await final()
            elif event == "speech_start":
                if not manual:
                    await error("invalid_event", "speech_start needs endpointing=manual")
                else:
                    in_speech = True
            elif event in ("speech_end", "flush"):
                if not manual:
                    await error("invalid_event", f"{event} needs endpointing=manual")
                elif in_speech:
                    await final()
            elif event == "ping":
                await send("pong")
            elif event == "config.update":
                await send("config.updated", applied=sorted(k for k in msg if k != "event"))
            elif event == "end":
                if in_speech:
                    await final()
                await send(
                    "session.end",
                    request_id=rid,
                    total_duration_s=round(time.monotonic() - opened, 3),
                    total_utterances=utterance,
                    audio_duration_s=round(received_s, 3),
                )
                await ws.close(1000)
                return
            else:
                await error("invalid_message", f"unknown event {event!r}")
    except WebSocketDisconnect:
        return


# --- Sarvam TTS socket (providers.md §12) -----------------------------------------------------
async def sarvam_tts_ws(ws: WebSocket) -> None:
    if ws.headers.get("api-subscription-key") != SARVAM_KEY:
        await ws.send_denial_response(Response("invalid API key", status_code=401))
        return
    model = ws.query_params.get("model", "bulbul:v3")
    completion = ws.query_params.get("send_completion_event", "").lower() == "true"
    await ws.accept()

    async def error(message: str, code: int = 400) -> None:
        await ws.send_text(json.dumps({"type": "error", "data": {"message": message, "code": code}}))

    config, buffer = None, ""
    try:
        while True:
            try:
                msg = json.loads(await asyncio.wait_for(ws.receive_text(), timeout=60))
            except TimeoutError:
                await ws.close(1008, "idle for 60 s")  # the socket closes after about a minute idle
                return
            kind = msg.get("type")
            if config is None and kind != "config":
                await error("the first message must be a config message")
                continue
            if kind == "config":
                data = msg.get("data", {})
                valid = V2 if model == "bulbul:v2" else V3 if model == "bulbul:v3" else None
                if data.get("language_code") not in CORE or (valid is not None and data.get("speaker") not in valid):
                    await error("invalid language_code or speaker for this model")
                    continue
                config = data  # pitch/loudness sent by the SDK are ignored on v3, not rejected
            elif kind == "text":
                text = msg.get("data", {}).get("text", "")
                if not 1 <= len(text) <= 2500:
                    await error("text must be 1 to 2500 characters")
                    continue
                buffer += text
            elif kind == "flush" and buffer:
                rate = int(config.get("speech_sample_rate") or 22050)
                codec = config.get("output_audio_codec", "mp3")
                samples = speech_for(buffer, rate)
                audio = (
                    samples.tobytes()
                    if codec == "linear16"
                    else wav(samples, rate)
                    if codec == "wav"
                    else b"\xff\xfb\x90\x00" * 64
                )
                for i in range(0, len(audio), 8192):
                    await ws.send_text(
                        json.dumps(
                            {
                                "type": "audio",
                                "data": {
                                    "content_type": f"audio/{'pcm' if codec == 'linear16' else codec}",
                                    "request_id": _rid(),
                                    "audio": base64.b64encode(audio[i : i + 8192]).decode(),
                                },
                            }
                        )
                    )
                buffer = ""
                if completion:
                    await ws.send_text(json.dumps({"type": "event", "data": {"event_type": "final"}}))
            elif kind == "ping":
                continue
    except WebSocketDisconnect:
        return


# --- streaming helpers and faults ------------------------------------------------------------
def stream_bytes(request: Request, payload: bytes, media: str, chunk: int = 4096) -> StreamingResponse:
    return stream_parts(request, [payload[i : i + chunk] for i in range(0, len(payload), chunk)], media)


def stream_parts(request: Request, parts: list[bytes], media: str) -> StreamingResponse:
    drop = request.scope.get("fake.drop_after")

    async def gen():
        sent = 0
        for part in parts:
            if drop is not None and sent >= drop:
                raise ConnectionError("fake: connection dropped mid-stream")
            yield part
            sent += len(part)
            await asyncio.sleep(0.001)

    return StreamingResponse(gen(), media_type=media)


class Faults:
    """ASGI middleware: applies the first matching fault (status/headers/delay/drop), then counts."""

    def __init__(self, app, state: State) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            self.state.calls[scope["path"]] += 1
            return await self.app(scope, receive, send)
        if scope["type"] != "http" or scope["path"].startswith("/_control"):
            return await self.app(scope, receive, send)
        path = scope["path"]
        self.state.calls[path] += 1
        fault = next((f for f in self.state.faults if path.startswith(f.path) and f.times > 0), None)
        if fault is not None:
            fault.times -= 1
            if fault.delay_s:
                await asyncio.sleep(fault.delay_s)
            if fault.drop_after_bytes is not None:
                scope["fake.drop_after"] = fault.drop_after_bytes
            elif fault.status:
                headers = {}
                if fault.retry_after is not None:
                    headers["retry-after"] = fault.retry_after
                if fault.retry_after_ms is not None:
                    headers["retry-after-ms"] = fault.retry_after_ms
                response = self._error(path, fault, headers)
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)

    @staticmethod
    def _error(path: str, fault: Fault, headers: dict) -> Response:
        if path.startswith("/openai"):
            r = openai_error(fault.status, "server_error", fault.code, "fake fault")
        elif path.startswith("/v1/text-to-speech"):
            r = eleven_error(fault.status, "service_unavailable", fault.code or "system_busy", "fake fault")
        else:
            code = fault.code or (
                "rate_limit_exceeded_error" if fault.status in (429, 503) else "internal_server_error"
            )
            r = sarvam_error(fault.status, code, "fake fault")
        r.headers.update(headers)
        return r


def build_app(state: State | None = None):
    state = state or State()

    def guarded(handler, auth=sarvam_auth):
        async def endpoint(request: Request) -> Response:
            if auth is not None and (denied := auth(request)) is not None:
                return denied
            try:
                return await handler(request)
            except json.JSONDecodeError:
                return sarvam_error(400, "invalid_request_error", "the body is not valid JSON")

        return endpoint

    async def add_fault(request: Request) -> Response:
        state.faults.append(Fault(**await request.json()))
        return JSONResponse({"ok": True})

    async def clear(request: Request) -> Response:
        state.faults.clear()
        state.calls.clear()
        return JSONResponse({"ok": True})

    async def calls(request: Request) -> Response:
        return JSONResponse(dict(state.calls))

    app = Starlette(
        routes=[
            Route("/speech-to-text", guarded(sarvam_stt), methods=["POST"]),
            WebSocketRoute("/speech-to-text/ws", sarvam_stt_ws),
            WebSocketRoute("/speech-to-text-realtime/ws", sarvam_stt_realtime_ws),
            WebSocketRoute("/text-to-speech/ws", sarvam_tts_ws),
            Route("/text-to-speech", guarded(sarvam_tts), methods=["POST"]),
            Route("/text-to-speech/stream", guarded(sarvam_tts_stream), methods=["POST"]),
            Route("/translate", guarded(sarvam_translate), methods=["POST"]),
            Route("/text-lid", guarded(sarvam_lid), methods=["POST"]),
            Route("/v1/chat/completions", guarded(sarvam_chat), methods=["POST"]),
            Route("/v1/text-to-speech/{voice_id}", guarded(eleven_tts, None), methods=["POST"]),
            Route("/v1/text-to-speech/{voice_id}/stream", guarded(eleven_tts, None), methods=["POST"]),
            Route("/openai/v1/chat/completions", guarded(openai_chat, None), methods=["POST"]),
            Route("/_control/faults", add_fault, methods=["POST"]),
            Route("/_control/faults", clear, methods=["DELETE"]),
            Route("/_control/calls", calls, methods=["GET"]),
        ]
    )
    app.state.fake = state
    return Faults(app, state), state


class FakeServer(Served):
    """The provider fake on a loopback port, in a background thread."""

    def __init__(self) -> None:
        self.app, self.state = build_app()
        super().__init__(self.app)

    def fault(self, **kw) -> None:
        self.state.faults.append(Fault(**kw))

    def reset(self) -> None:
        self.state.faults.clear()
        self.state.calls.clear()
        self.state.eleven_bodies.clear()
        self.state.realtime_hangs = False
