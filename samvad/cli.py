"""`samvad` command line. Heavy imports happen inside commands so `--help` stays fast.

The CLI is the one place in `samvad` that reaches into `rag_index` (lazily): it is the
entry point that assembles the parts.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from samvad.errors import SamvadError
from samvad.settings import Settings, load_settings

app = typer.Typer(help="Samvad voice-assistant backend", no_args_is_help=True, pretty_exceptions_enable=False)
index_app = typer.Typer(help="Build and inspect the RAG index", no_args_is_help=True)
app.add_typer(index_app, name="index")
console = Console()

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config (default configs/default.yaml)")]


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]config error:[/red] {exc}")
        raise typer.Exit(2) from None


def _bar(description: str) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    )


@index_app.command("build")
def index_build(
    corpus: Annotated[Path, typer.Argument(help="folder of .md / .txt documents")],
    out: Annotated[Path, typer.Option("--out", "-o", help="index folder to write")],
    config: ConfigOpt = None,
) -> None:
    """Chunk and embed CORPUS into a FAISS index folder."""
    from rag_index.build import build_index
    from samvad.embeddings import get_embedder

    s = _settings(config)
    with _bar("embedding") as bar:
        task = bar.add_task("loading model", total=None)
        embedder = get_embedder(s.embeddings)
        bar.update(task, description="embedding chunks")
        try:
            result = build_index(
                corpus, out, embedder, chunk_chars=s.rag.chunk_chars, overlap_chars=s.rag.overlap_chars,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        except SamvadError as exc:
            console.print(f"[red]{exc.code}:[/red] {exc.message}")
            raise typer.Exit(1) from None
    for w in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
    m = result.manifest
    table = Table(title=f"index written to {out}")
    for col in ("documents", "chunks", "model", "dim", "seconds", "chunks/s"):
        table.add_column(col)
    table.add_row(
        str(m.documents), str(m.chunks), m.embedding_model, str(m.dimension), f"{result.seconds:.1f}",
        f"{m.chunks / max(result.embed_seconds, 1e-9):.0f}",
    )
    console.print(table)


@app.command()
def say(
    out: Annotated[Path, typer.Option("--out", "-o", help="WAV file for the spoken answer")],
    audio_in: Annotated[Optional[Path], typer.Option("--in", "-i", help="WAV (or FLAC/OGG) question")] = None,
    text: Annotated[Optional[str], typer.Option("--text", "-t", help="question as text")] = None,
    language: Annotated[Optional[str], typer.Option("--language", "-l", help="caller's language, e.g. hi-IN")] = None,
    config: ConfigOpt = None,
) -> None:
    """Run one turn in this process and write the reply audio."""
    from rag_index.pipeline import local_runner
    from samvad.audio import wav_bytes
    from samvad.events import AudioEvent, ErrorEvent, ResponseDeltaEvent, TranscriptEvent, TurnDoneEvent
    from samvad.turn import TurnRequest

    s = _settings(config)
    if (audio_in is None) == (text is None):
        console.print("[red]give exactly one of --in WAV or --text TEXT[/red]")
        raise typer.Exit(2)
    try:
        data = audio_in.read_bytes() if audio_in else None
    except OSError as exc:
        console.print(f"[red]cannot read {audio_in}:[/red] {exc.strerror}")
        raise typer.Exit(2) from None
    with _bar("index") as bar:
        task = bar.add_task("loading engines", total=None)
        runner = local_runner(s, progress=lambda d, t: bar.update(task, description="building index", completed=d, total=t))
    request = TurnRequest(turn_id=uuid.uuid4().hex, audio=data, text=text, language=language or s.default_language)

    async def run() -> tuple[list[bytes], int, TurnDoneEvent | None, list[str]]:
        pcm, rate, done, errors = [], 0, None, []
        async for ev in runner.run(request):
            if isinstance(ev, TranscriptEvent):
                console.print(f"[bold]transcript[/bold] ({ev.transcript.language_code}, "
                              f"confidence {ev.transcript.confidence:.2f}): {ev.transcript.text}")
            elif isinstance(ev, ResponseDeltaEvent):
                console.print(f"[bold]answer[/bold] [{ev.index}]: {ev.text}")
            elif isinstance(ev, AudioEvent):
                pcm.append(ev.audio)
                rate = ev.sample_rate
            elif isinstance(ev, ErrorEvent):
                errors.append(f"{ev.code}: {ev.message}")
            elif isinstance(ev, TurnDoneEvent):
                done = ev
        return pcm, rate, done, errors

    try:
        pcm, rate, done, errors = asyncio.run(run())
    except SamvadError as exc:
        console.print(f"[red]{exc.code}:[/red] {exc.message}")
        raise typer.Exit(1) from None
    for e in errors:
        console.print(f"[red]error[/red] {e}")
    if done is None or done.outcome != "complete" or not pcm:
        raise typer.Exit(1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(wav_bytes(b"".join(pcm), rate))
    table = Table(title="stage timings (ms)")
    for col in ("stage", "first byte", "total"):
        table.add_column(col)
    for stage, t in done.stages.items():
        table.add_row(stage, f"{t.ttfb_ms:.1f}" if t.ttfb_ms is not None else "-", f"{t.total_ms:.1f}")
    table.add_row("turn → first audio", f"{done.first_audio_ms:.1f}" if done.first_audio_ms else "-", "")
    console.print(table)
    if done.flags:
        console.print(f"flags: {', '.join(done.flags)}")
    console.print(f"sources: {', '.join(done.response.metadata.sources[:3])}")
    console.print(f"wrote {out} ({sum(map(len, pcm)) / 2 / rate:.1f} s at {rate} Hz)")


def main() -> None:
    app()
