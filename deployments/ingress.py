"""The Ingress deployment: `samvad.api` (routes, auth, rate limits, voice admission) over Serve
handles. A turn goes to the Sessions replica hosting its conversation (routed by session id);
ASR and TTS calls go straight to their stage deployments; every call uses the one retry policy
of `actors.remote`."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from typing import Any

import ray
import uvicorn
from ray import serve

from actors import remote, telemetry
from deployments.ordered_receive import OrderedDisconnect
from samvad.api.app import build_api
from samvad.api.frontend import Frontend
from samvad.audio import Audio
from samvad.providers.base import SpeechRequest
from samvad.settings import Settings
from samvad.storage.database import Database
from samvad.turn import TurnRequest


class ServeBackend:
    """`samvad.api.frontend.Backend` over deployment handles."""

    def __init__(self, asr, tts, sessions) -> None:
        # Every Sessions call's first argument, the session id, picks the replica hosting that
        # conversation (actors.router.SessionRouter).
        self.asr, self.sessions = asr, sessions
        self._tts_stream = tts.options(stream=True)
        self._sessions_stream = sessions.options(stream=True)
        self._metrics_url: str | None = None
        self._partials: bool | None = None  # whether the ASR deployment offers partial transcripts

    async def answer(self, session_id: str, request: TurnRequest):
        # A host that dies mid-turn: the turn runs again on the conversation's next host, with the
        # same turn id (its writes are upserts: nothing doubled).
        return await remote.call(lambda: self.sessions.answer.remote(session_id, request))

    async def stream(self, session_id: str, request: TurnRequest) -> AsyncIterator:
        async for batch in remote.stream(lambda: self._sessions_stream.stream.remote(session_id, request)):
            for event in batch:
                yield event

    async def settle(self, session_id: str, turn_id: str, heard: str, complete: bool) -> None:
        await remote.call(lambda: self.sessions.settle.remote(session_id, turn_id, heard, complete))

    async def transcribe(self, audio: Audio, language: str | None):
        return await remote.call(lambda: self.asr.transcribe.remote(audio, language))

    async def partial(self, audio: Audio, language: str | None):
        # Asked once per replica: with engines that offer none (cloud STT, stubs), a live call
        # makes no hop for them. One try, no retry: a partial late is worth nothing.
        if self._partials is None:
            self._partials = await remote.call(lambda: self.asr.offers_partials.remote())
        return await self.asr.partial.remote(audio, language) if self._partials else None

    async def synthesize(self, speech: SpeechRequest) -> AsyncIterator:
        async for item in remote.stream(lambda: self._tts_stream.stream.remote(speech)):
            yield item

    def metrics_url(self) -> str:
        """This node's Ray metrics agent (it exports every process on the node)."""
        if self._metrics_url is None:
            node_id = ray.get_runtime_context().get_node_id()
            node = next(n for n in ray.nodes() if n["NodeID"] == node_id)
            self._metrics_url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
        return self._metrics_url


def bound_websocket_frames(max_size: int, max_queue: int = 8) -> None:
    """Make the uvicorn servers this process starts refuse a WebSocket frame over `max_size`
    before reading it (close 1009), and hold at most `max_queue` frames read ahead of the app.
    Serve starts the replica's own server (direct ingress) with uvicorn's defaults and no
    setting for them: 16 MiB frames, read whole before the app's own frame check could run, 32
    of them queued. Applied before Serve builds that server's Config."""
    init = uvicorn.Config.__init__
    if getattr(init, "samvad_max_size", None) == max_size:
        return
    original = getattr(init, "__wrapped__", init)

    @functools.wraps(original)
    def bounded(self: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        kwargs["ws_max_size"] = min(kwargs.get("ws_max_size", max_size), max_size)
        kwargs["ws_max_queue"] = min(kwargs.get("ws_max_queue", max_queue), max_queue)
        original(self, *args, **kwargs)

    bounded.samvad_max_size = max_size  # type: ignore[attr-defined]
    uvicorn.Config.__init__ = bounded  # type: ignore[method-assign]


@serve.deployment(name="Ingress")
@serve.ingress()  # the app is built in the replica (`__serve_build_asgi_app__`), with its frontend
class Ingress:
    def __init__(self, settings: dict[str, Any], asr, tts, sessions) -> None:
        telemetry.install()
        s = Settings.model_validate(settings)
        # Twice the app's own limits: a frame a little over them is still read and refused with a
        # recoverable error event; a bigger one never reaches memory.
        bound_websocket_frames(2 * max(s.voice.max_binary_bytes, s.voice.max_text_bytes))
        self.frontend = Frontend(
            s, Database(s), ServeBackend(asr, tts, sessions), replica=serve.get_replica_context().replica_id.unique_id
        )

    def __serve_build_asgi_app__(self):
        # Built here rather than at import: Serve serves a pickled copy of an app given to
        # `serve.ingress(app)`, so settings put on the module's app never reached the requests.
        app = build_api()
        self.frontend.configure(app)
        app.add_middleware(OrderedDisconnect)  # a caller's last messages before its hang-up are read
        return app

    async def drain(self, on: bool = True) -> int:
        """Shutdown (`samvad run` on SIGINT/SIGTERM, broadcast to every replica): live calls end
        after the answer playing, told how to resume (`session.closing`, close 1012); new calls
        are refused with 1012. `drain(False)` takes new calls again. Returns the live calls."""
        return self.frontend.drain(on)
