"""`samvad` command line. Heavy imports happen inside commands so `--help` stays fast.

The CLI is the one place in `samvad` that reaches into `rag_index` (lazily): it is the
entry point that assembles the parts.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from samvad.errors import SamvadError
from samvad.settings import SERVE_CONFIG, Settings, load_settings

if TYPE_CHECKING:
    from rag_index.evaluate import QaItem, Scores
    from rag_index.retriever import Retriever
    from rag_index.stores.base import StoreInfo, VectorStore
    from samvad.contracts import Passage
    from samvad.storage.phones import PhoneRoute
    from samvad.storage.repository import Repository

T = TypeVar("T")

app = typer.Typer(help="Samvad voice-assistant backend", no_args_is_help=True, pretty_exceptions_enable=False)
index_app = typer.Typer(help="Build and inspect the RAG index", no_args_is_help=True)
app.add_typer(index_app, name="index")
console = Console()

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (default configs/default.yaml)")]
STORES = ("faiss", "pgvector", "pinecone", "weaviate")
StoreOpt = Annotated[
    str,
    typer.Option(
        "--store",
        help="where the version is served from: faiss (the folder itself) or a shared store, pgvector "
        "(the configured PostgreSQL), pinecone or weaviate (providers.pinecone / providers.weaviate)",
    ),
]


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]config error:[/red] {exc}")
        raise typer.Exit(2) from None


def _bar(description: str) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


@index_app.command("build")
def index_build(
    corpus: Annotated[Path, typer.Argument(help="folder of .md / .txt documents")],
    out: Annotated[Path, typer.Option("--out", "-o", help="index folder to write")],
    store: StoreOpt = "faiss",
    config: ConfigOpt = None,
) -> None:
    """Chunk and embed CORPUS into a FAISS index folder (with a shared --store, also loaded into
    it as a version that is not live yet)."""
    from rag_index.build import build_index
    from samvad.embeddings import get_embedder

    s = _settings(config)
    with _bar("embedding") as bar:
        task = bar.add_task("loading model", total=None)
        embedder = get_embedder(s.embeddings)
        bar.update(task, description="embedding chunks")
        try:
            result = build_index(
                corpus,
                out,
                embedder,
                chunk_chars=s.rag.chunk_chars,
                overlap_chars=s.rag.overlap_chars,
                ann_threshold=s.rag.ann_threshold,
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
        str(m.documents),
        str(m.chunks),
        m.embedding_model,
        str(m.dimension),
        f"{result.seconds:.1f}",
        f"{m.chunks / max(result.embed_seconds, 1e-9):.0f}",
    )
    console.print(table)
    if store != "faiss":
        _load_store(s, store, out)


def _retriever(index_dir: Path, s: Settings) -> Retriever:
    """The index read with the embedder that built it (so `eval --compare` can set two
    embedders side by side), whatever the service is configured with."""
    from rag_index.build import read_manifest
    from rag_index.retriever import Retriever
    from samvad.embeddings import embedder_named

    try:
        return Retriever(index_dir, embedder_named(read_manifest(index_dir).embedding_model, s.embeddings))
    except SamvadError as exc:
        console.print(f"[red]{exc.code}:[/red] {exc.message}")
        raise typer.Exit(1) from None


@index_app.command("update")
def index_update(
    index_dir: Annotated[Path, typer.Argument(help="the index to start from (left intact)")],
    corpus: Annotated[Path, typer.Argument(help="the corpus folder, as it is now")],
    out: Annotated[Path, typer.Option("--out", "-o", help="where to write the new version")],
    store: StoreOpt = "faiss",
    config: ConfigOpt = None,
) -> None:
    """Build a new version embedding only new or changed documents; deleted ones are dropped.
    With a shared --store, the version is also loaded into it (not live yet), sending only the
    changed documents' chunks."""
    from rag_index.build import build_index
    from samvad.embeddings import get_embedder

    s = _settings(config)
    old = _retriever(index_dir, s).manifest
    with _bar("embedding") as bar:
        task = bar.add_task("embedding changed documents", total=None)
        try:
            result = build_index(
                corpus,
                out,
                get_embedder(s.embeddings),
                chunk_chars=old.chunk_chars,
                overlap_chars=old.overlap_chars,
                previous=index_dir,
                ann_threshold=s.rag.ann_threshold,
                progress=lambda d, t: bar.update(task, completed=d, total=t),
            )
        except SamvadError as exc:
            console.print(f"[red]{exc.code}:[/red] {exc.message}")
            raise typer.Exit(1) from None
    m = result.manifest
    added = set(m.document_hashes) - set(old.document_hashes)
    removed = set(old.document_hashes) - set(m.document_hashes)
    changed = {
        d for d in set(m.document_hashes) & set(old.document_hashes) if m.document_hashes[d] != old.document_hashes[d]
    }
    table = Table(title=f"new version written to {out}")
    for col in ("documents", "added", "changed", "removed", "chunks", "chunks embedded"):
        table.add_column(col)
    table.add_row(
        str(m.documents), str(len(added)), str(len(changed)), str(len(removed)), str(m.chunks), str(m.embedded_chunks)
    )
    console.print(table)
    if store != "faiss":
        _load_store(s, store, out)


@index_app.command("publish")
def index_publish(
    index_dir: Annotated[Path, typer.Argument(help="the version to make live")],
    store: StoreOpt = "faiss",
    knowledge_base: Annotated[
        str | None, typer.Option("--kb", help="the knowledge base it becomes live for (rag.knowledge_bases)")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Make INDEX_DIR the live index (of the default knowledge base, or --kb's). Running
    Retriever replicas switch to it within rag.reload_interval_s, without a restart. With a shared
    --store, the folder is loaded into it first unless it already is (only documents changed
    since the live version are sent)."""
    from rag_index.build import publish

    s = _settings(config)
    _retriever(index_dir, s)  # refuse a corrupt index or one from another embedding model here already
    try:
        kb = s.rag.check_knowledge_base(knowledge_base)
        if store != "faiss":
            _publish_store(s, store, index_dir, kb)
            return
        pointer = s.rag.pointer(kb)
        previous = publish(index_dir, pointer)
    except SamvadError as exc:
        console.print(f"[red]{exc.code}:[/red] {exc.message}")
        raise typer.Exit(1) from None
    console.print(f"{pointer} -> {index_dir.resolve()}" + (f" (was {previous})" if previous else ""))


def _qa(qa_file: Path, retriever: Retriever) -> list[QaItem]:
    """The QA file, checked against the index's documents; a bad one is a clear error, not a trace."""
    from rag_index.evaluate import load_qa

    try:
        return load_qa(qa_file, set(retriever.manifest.document_hashes))
    except SamvadError as exc:
        console.print(f"[red]{exc.code}:[/red] {exc.message}")
        raise typer.Exit(1) from None


def _advance(bar: Progress, task: TaskID) -> Callable[[int, int], None]:
    return lambda done, total: bar.update(task, completed=done)


def _on_store(
    s: Settings, store: str, work: Callable[[VectorStore], Awaitable[T]], knowledge_base: str | None = None
) -> T:
    """Run `work` on a connected shared store; its failures are a clear message, not a trace."""
    from rag_index.stores import REMOTE, open_store
    from rag_index.stores.base import StoreDown

    if store not in REMOTE:
        raise typer.BadParameter(f"unknown store {store!r}: one of {', '.join(STORES)}", param_hint="--store")
    if store == "pgvector":
        s = _servers(s)

    async def run() -> T:
        opened = await open_store(s, store, knowledge_base)
        try:
            return await work(opened)
        finally:
            await opened.close()

    try:
        return asyncio.run(run())
    except (StoreDown, SamvadError, ValueError, LookupError) as exc:
        console.print(f"[red]{store}:[/red] {getattr(exc, 'message', None) or exc}")
        raise typer.Exit(1) from None


def _eval_store(
    s: Settings,
    store: str,
    retriever: Retriever,
    items: list[QaItem],
    k: int,
    progress: Callable[[int, int], None],
) -> Scores:
    """The folder loaded into a shared store as a scratch version (dropped after), searched like FAISS."""
    from rag_index.evaluate import evaluate
    from rag_index.retriever import StoreRetriever
    from rag_index.stores.base import version_of
    from samvad.providers.breaker import CircuitBreaker

    async def work(opened: VectorStore) -> Scores:
        version = f"eval_{version_of(retriever.index_dir)}"[:50]
        info = await opened.load(retriever.index_dir, version)
        searcher = StoreRetriever(opened, info, retriever._embedder, CircuitBreaker())
        loop = asyncio.get_running_loop()

        class Search:  # evaluate() calls search() from a worker thread; the store lives on this loop
            def search(self, query: str, k: int) -> list[Passage]:
                return asyncio.run_coroutine_threadsafe(searcher.asearch(query, k), loop).result()

        try:
            return await asyncio.to_thread(evaluate, Search(), items, k, progress)
        finally:
            await opened.drop(version)

    return _on_store(s, store, work)


def _publish_store(s: Settings, store: str, index_dir: Path, knowledge_base: str | None = None) -> None:
    from rag_index.stores.base import load_and_publish

    async def work(opened: VectorStore) -> tuple[StoreInfo, str | None]:
        with _bar(store) as bar:
            bar.add_task(f"loading {index_dir.name} into {store}", total=None)
            return await load_and_publish(opened, index_dir)

    info, previous = _on_store(s, store, work, knowledge_base)
    sent = "" if info.sent is None else f", {info.sent} sent, {info.copied or 0} copied"
    kb = f" for {knowledge_base}" if knowledge_base else ""
    console.print(
        f"{store}: {info.version} is live{kb} ({info.chunks} chunks{sent})" + (f", was {previous}" if previous else "")
    )


def _load_store(s: Settings, store: str, index_dir: Path) -> None:
    """`build|update --store`: the new folder loaded as a version that is not live yet."""
    from rag_index.stores.base import load_update

    async def work(opened: VectorStore) -> StoreInfo:
        with _bar(store) as bar:
            bar.add_task(f"loading {index_dir.name} into {store}", total=None)
            return await load_update(opened, index_dir)

    info = _on_store(s, store, work)
    console.print(
        f"{store}: loaded {info.version} ({info.chunks} chunks, {info.sent} sent, {info.copied or 0} copied "
        f"from the live version); make it live with: samvad index publish {index_dir} --store {store}"
    )


@index_app.command("info")
def index_info(index_dir: Annotated[Path, typer.Argument()], config: ConfigOpt = None) -> None:
    """Show an index's manifest."""
    m = _retriever(index_dir, _settings(config)).manifest
    table = Table(title=str(index_dir))
    table.add_column("field")
    table.add_column("value")
    for key, value in m.model_dump(exclude={"document_hashes"}).items():
        table.add_row(key, str(value))
    console.print(table)


@index_app.command("search")
def index_search(
    index_dir: Annotated[Path, typer.Argument()],
    query: Annotated[str, typer.Argument()],
    k: Annotated[int, typer.Option("-k")] = 5,
    config: ConfigOpt = None,
) -> None:
    """Top-k passages for a query."""
    table = Table(title=query)
    for col in ("score", "source", "heading", "text"):
        table.add_column(col)
    for p in _retriever(index_dir, _settings(config)).search(query, k):
        table.add_row(f"{p.score:.3f}", p.source, p.heading, p.text[:120].replace("\n", " "))
    console.print(table)


@index_app.command("eval")
def index_eval(
    index_dir: Annotated[Path, typer.Argument()],
    qa_file: Annotated[Path, typer.Argument(help="YAML: question, sources, kind")],
    k: Annotated[int, typer.Option("-k")] = 5,
    compare: Annotated[Path | None, typer.Option("--compare", help="another index, measured side by side")] = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="also search the same index loaded into this store (pgvector, pinecone, weaviate), side by side"
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """recall@k, MRR, nDCG@k and search time of the index on a labelled QA file."""
    from rag_index.evaluate import evaluate

    s = _settings(config)
    results = {}
    if store is not None:
        if store == "faiss" or compare is not None:
            raise typer.BadParameter(
                "a shared store (pgvector, pinecone, weaviate), without --compare", param_hint="--store"
            )
        retriever = _retriever(index_dir, s)
        items = _qa(qa_file, retriever)
        with _bar("eval") as bar:
            tasks = [bar.add_task(f"evaluating {index_dir} ({name})", total=len(items)) for name in ("faiss", store)]
            results["index"] = evaluate(retriever, items, k, _advance(bar, tasks[0]))
            results["compare"] = _eval_store(s, store, retriever, items, k, _advance(bar, tasks[1]))
        compare = Path(store)
    for label, path in [] if store else [("index", index_dir)] + ([("compare", compare)] if compare else []):
        retriever = _retriever(path, s)
        items = _qa(qa_file, retriever)
        with _bar("eval") as bar:
            results[label] = evaluate(
                retriever, items, k, _advance(bar, bar.add_task(f"evaluating {path}", total=len(items)))
            )
        if label == "index" and not compare and any(it.history for it in items):
            # Follow-ups: the same index searched on the question's own words only, side by side.
            results["compare"] = evaluate(retriever, items, k, conversational=False)
    follow_ups = "compare" in results and not compare
    table = Table(title=f"retrieval quality, {results['index'].questions} questions, k={k}")
    table.add_column("metric")
    table.add_column("last utterance only" if follow_ups else str(index_dir))
    if compare or follow_ups:
        table.add_column("with the conversation" if follow_ups else str(compare))
        table.add_column("difference")
    a, b = results["index"], results.get("compare")
    if follow_ups and b is not None:  # before -> after
        a, b = b, a
    rows: list[tuple[str, str | tuple[str, str]]] = [
        ("recall@k", "recall_at_k"),
        ("MRR", "mrr"),
        ("nDCG@k", "ndcg_at_k"),
        ("search ms p50", "search_ms_p50"),
    ]
    if a.follow_up_recall is not None:
        rows.append(("recall@k follow-ups", "follow_up_recall"))
    rows += [
        row
        for kind in a.by_kind
        for row in ((f"recall@k {kind}", ("by_kind", kind)), (f"MRR {kind}", ("mrr_by_kind", kind)))
    ]

    def value(scores: Scores, key: str | tuple[str, str]) -> float:
        if isinstance(key, tuple):
            return float(getattr(scores, key[0]).get(key[1], 0.0))
        return float(getattr(scores, key))

    for name, key in rows:
        va = value(a, key)
        cells = [name, f"{va:.3f}"]
        if b is not None:
            vb = value(b, key)
            cells += [f"{vb:.3f}", f"{vb - va:+.3f}"]
        table.add_row(*cells)
    console.print(table)


@app.command()
def say(
    out: Annotated[Path, typer.Option("--out", "-o", help="WAV file for the spoken answer")],
    audio_in: Annotated[Path | None, typer.Option("--in", "-i", help="WAV (or FLAC/OGG) question")] = None,
    text: Annotated[str | None, typer.Option("--text", "-t", help="question as text")] = None,
    language: Annotated[str | None, typer.Option("--language", "-l", help="caller's language, e.g. hi-IN")] = None,
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
        runner = local_runner(
            s, progress=lambda d, t: bar.update(task, description="building index", completed=d, total=t)
        )
    request = TurnRequest(turn_id=uuid.uuid4().hex, audio=data, text=text, language=language or s.default_language)

    async def run() -> tuple[list[bytes], int, TurnDoneEvent | None, list[str]]:
        pcm, rate, done, errors = [], 0, None, []
        async for ev in runner.run(request):
            if isinstance(ev, TranscriptEvent):
                console.print(
                    f"[bold]transcript[/bold] ({ev.transcript.language_code}, "
                    f"confidence {ev.transcript.confidence:.2f}): {ev.transcript.text}"
                )
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


db_app = typer.Typer(help="Database schema", no_args_is_help=True)
keys_app = typer.Typer(help="API keys", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")


def _servers(s: Settings, caches: bool = False) -> Settings:
    """Start embedded PostgreSQL / Redis for whatever has no URL configured (`caches`: the
    caches' Redis too, which only the service uses)."""
    from samvad.storage import embedded

    updates = {}
    if not s.database_url:  # development: secrets are generated and kept in var/ (dev_secrets)
        from samvad.dev_secrets import with_dev_secrets

        s = with_dev_secrets(s)
        console.print(f"starting embedded PostgreSQL in {s.data_dir / 'postgres'}")
        updates["database_url"] = embedded.start_postgres(s.data_dir)
    if not s.redis_url:
        console.print(f"starting embedded Redis in {s.data_dir / 'redis'}")
        updates["redis_url"] = embedded.start_redis(s.data_dir)
        if caches and not s.cache_redis_url:  # the caches on one of their own, which may evict
            updates["cache_redis_url"] = embedded.start_redis(s.data_dir, "cache")
    elif not s.cache_redis_url and (policy := embedded.eviction_policy(s.redis_url)).startswith("allkeys"):
        console.print(
            f"[yellow]the Redis at redis_url evicts any key (maxmemory-policy {policy}): rate limits, leases "
            "and revoked keys could be dropped. Give the caches their own (cache_redis_url) and this one "
            "noeviction[/yellow]"
        )
    return s.model_copy(update=updates)


async def _repo(s: Settings) -> Repository:
    from samvad.settings import ConfigError, secret
    from samvad.storage.repository import Repository

    try:
        key_secret = secret(s.service, "key")
    except ConfigError as exc:
        console.print(f"[red]config error:[/red] {exc}")
        raise typer.Exit(2) from None
    if not s.database_url:
        raise RuntimeError("no database: _servers() starts one or names it")
    return await Repository.connect(s.database_url, key_secret, max_size=2)


def _with_repo(s: Settings, work: Callable[[Repository], Awaitable[T]]) -> T:
    """Run `work` on a short-lived repository connection (migrations applied first)."""

    async def run() -> T:
        repo = await _repo(s)
        try:
            return await work(repo)
        finally:
            await repo.close()

    return asyncio.run(run())


@db_app.command("migrate")
def db_migrate(config: ConfigOpt = None) -> None:
    """Apply pending schema migrations."""
    import asyncpg

    from samvad.storage.migrate import migrate

    s = _servers(_settings(config))

    async def run() -> list[str]:
        conn = await asyncpg.connect(s.database_url)
        try:
            return await migrate(conn)
        finally:
            await conn.close()

    applied = asyncio.run(run())
    console.print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="who the key is for")],
    rpm: Annotated[
        int | None, typer.Option("--rpm", min=1, help="requests per minute (default: limits.requests_per_minute)")
    ] = None,
    max_sessions: Annotated[int | None, typer.Option("--max-sessions", min=1, help="concurrent voice sessions")] = None,
    max_open: Annotated[
        int | None,
        typer.Option("--max-open-sessions", min=1, help="open conversations (default: limits.max_open_sessions)"),
    ] = None,
    new_per_minute: Annotated[
        int | None,
        typer.Option(
            "--sessions-per-minute", min=1, help="new conversations per minute (default: limits.sessions_per_minute)"
        ),
    ] = None,
    knowledge_bases: Annotated[
        list[str] | None,
        typer.Option(
            "--kb",
            help="a knowledge base it may use (repeat; the first is its default; '*': every one served; "
            "none: only the default one)",
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Create an API key (shown once; only its hash is stored) with optional limits of its own."""
    s = _settings(config)
    try:
        for kb in knowledge_bases or []:
            s.rag.check_served(kb)
    except SamvadError as exc:
        console.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(1) from None
    row, key = _with_repo(
        _servers(s),
        lambda repo: repo.create_key(name, rpm, max_sessions, max_open, new_per_minute, knowledge_bases or None),
    )
    console.print(f"key {row.id} ({row.name}): [bold]{key}[/bold]")


@keys_app.command("revoke")
def keys_revoke(key_id: int, config: ConfigOpt = None) -> None:
    """Revoke an API key by id: refused at once by every replica, its live calls closed."""
    from samvad.api.revocation import publish_revocation

    s = _servers(_settings(config))
    if not _with_repo(s, lambda repo: repo.revoke_key(key_id)):
        console.print(f"[red]no active key with id {key_id}[/red]")
        raise typer.Exit(1)
    try:
        if s.redis_url:
            asyncio.run(publish_revocation(s.redis_url, key_id))
    except Exception as exc:  # noqa: BLE001 - the database (the authority) already refuses it
        console.print(
            f"revoked key {key_id} [yellow]in the database; Redis could not be told ({type(exc).__name__}), "
            "so replicas refuse it when their 30 s key cache expires and live calls go on[/yellow]"
        )
        return
    console.print(f"revoked key {key_id}: refused by every replica now, its live calls closed")


def _kbs(allowed: list[str] | None) -> str:
    if not allowed:
        return "default only"
    return "every one (*)" if "*" in allowed else ", ".join(allowed)


@keys_app.command("list")
def keys_list(config: ConfigOpt = None) -> None:
    """List API keys (never the keys themselves)."""
    keys = _with_repo(_servers(_settings(config)), lambda repo: repo.list_keys())
    table = Table()
    for col in ("id", "name", "prefix", "knowledge bases", "created", "revoked"):
        table.add_column(col)
    for k in keys:
        table.add_row(
            str(k.id),
            k.name,
            k.prefix + "…",
            _kbs(k.knowledge_bases),
            f"{k.created_at:%Y-%m-%d %H:%M}",
            f"{k.revoked_at:%Y-%m-%d}" if k.revoked_at else "",
        )
    console.print(table)


phone_app = typer.Typer(help="Phone numbers answered by Samvad (README: Phone numbers)", no_args_is_help=True)
app.add_typer(phone_app, name="phone")
CARRIERS = ("twilio", "exotel", "plivo")


@phone_app.command("add")
def phone_add(
    number: Annotated[str, typer.Argument(help="the called number, E.164 (+918012345678)")],
    key_id: Annotated[int, typer.Option("--key-id", help="the API key whose calls these are (samvad keys list)")],
    language: Annotated[str, typer.Option(help="what the calls are answered in (a language code, or auto)")] = "en-IN",
    mode: Annotated[str | None, typer.Option(help="register (default: translation.default_mode)")] = None,
    voice: Annotated[str | None, typer.Option(help="TTS voice (default: the engine's)")] = None,
    greeting: Annotated[
        str | None,
        typer.Option(help="said when a call connects, in the route's language (up to 500 characters)"),
    ] = None,
    knowledge_base: Annotated[
        str | None, typer.Option("--kb", help="the knowledge base its calls answer from (rag.knowledge_bases)")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Route a phone number to an API key, with the language, register, voice, greeting and
    knowledge base of its calls."""
    from samvad.language import check_language

    s = _settings(config)

    async def add(repo: Repository) -> PhoneRoute:
        key = await repo.active_key(key_id)
        if key is None:
            raise ValueError(f"no active key {key_id} (samvad keys list)")
        kb = s.rag.check_knowledge_base(knowledge_base, key.knowledge_bases)  # one the key may use
        return await repo.add_phone_route(key_id, number, language, mode, voice, greeting, kb)

    try:
        check_language(language, s.languages)
        if greeting is not None and not 0 < len(greeting.strip()) <= 500:
            raise ValueError("--greeting: 1 to 500 characters")
        route = _with_repo(_servers(s), add)
    except (SamvadError, ValueError) as exc:
        console.print(f"[red]{getattr(exc, 'message', None) or exc}[/red]")
        raise typer.Exit(1) from None
    console.print(f"{route.number} -> key {route.api_key_id} ({route.language}); connect it: samvad phone url")


@phone_app.command("list")
def phone_list(
    key_id: Annotated[int | None, typer.Option("--key-id", help="only this key's numbers")] = None,
    config: ConfigOpt = None,
) -> None:
    """The routed numbers."""
    routes = _with_repo(_servers(_settings(config)), lambda repo: repo.phone_routes(key_id))
    table = Table()
    for col in ("id", "number", "key", "language", "mode", "voice", "knowledge base", "greeting"):
        table.add_column(col)
    for r in routes:
        table.add_row(
            str(r.id),
            r.number,
            str(r.api_key_id),
            r.language,
            r.mode or "",
            r.voice or "",
            r.knowledge_base or "",
            r.greeting or "",
        )
    console.print(table)


@phone_app.command("remove")
def phone_remove(number: Annotated[str, typer.Argument()], config: ConfigOpt = None) -> None:
    """Stop answering a number (its calls are refused from now on)."""
    try:
        removed = _with_repo(_servers(_settings(config)), lambda repo: repo.remove_phone_route(number))
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    console.print(f"{number}: {'removed' if removed else 'was not routed'}")
    if not removed:
        raise typer.Exit(1)


@phone_app.command("url")
def phone_url(
    carrier: Annotated[str, typer.Argument(help="twilio, exotel or plivo")],
    number: Annotated[str, typer.Argument(help="a routed number")],
    days: Annotated[float, typer.Option(min=0.01, max=3650, help="how long the URL works")] = 365,
    config: ConfigOpt = None,
) -> None:
    """What to paste into the carrier's console for NUMBER: Twilio's voice webhook, Plivo's answer
    URL, Exotel's Voicebot applet URL (its dynamic https form)."""
    from samvad.settings import secret
    from samvad.telephony import signing

    if carrier not in CARRIERS:
        raise typer.BadParameter(f"one of {', '.join(CARRIERS)}", param_hint="CARRIER")
    s = _servers(_settings(config))
    route = _with_repo(s, lambda repo: repo.phone_route(number))
    if route is None:
        console.print(f"[red]{number} is not routed: samvad phone add {number} --key-id …[/red]")
        raise typer.Exit(1)
    base = (s.telephony.public_url or "https://<this service>").rstrip("/")
    if carrier == "twilio":
        console.print(f"voice webhook (HTTP POST): {base}/api/v1/telephony/twilio/answer")
        if s.telephony.twilio_auth_token is None:
            console.print(
                "[yellow]set telephony.twilio_auth_token (SAMVAD_TELEPHONY__TWILIO_AUTH_TOKEN) first[/yellow]"
            )
        return
    token = signing.make(secret(s.service, "phone"), "a", carrier, route.id, days * 86400)
    kind = "answer URL (HTTP POST)" if carrier == "plivo" else "Voicebot applet URL (dynamic, https)"
    console.print(f"{kind}: {base}/api/v1/telephony/{carrier}/answer?token={token}")
    if carrier == "plivo" and s.telephony.plivo_auth_token is None:
        console.print(
            "to check Plivo's signature on it too: set telephony.plivo_auth_token (SAMVAD_TELEPHONY__PLIVO_AUTH_TOKEN)"
        )


@app.command()
def run(
    config: ConfigOpt = None,
    serve_config: Annotated[Path, typer.Option(help="deployment options")] = SERVE_CONFIG,
    ingress: Annotated[
        str,
        typer.Option(
            help="Serve's ingress: haproxy (HAProxy in front of ingress replicas that "
            "serve HTTP themselves: more live calls per core; see the README) or proxy "
            "(Serve's Python proxy)"
        ),
    ] = "haproxy",
) -> None:
    """Run the service on this machine: embedded servers where no URL is set, Ray Serve graph."""
    import logging
    import signal
    import time
    import warnings

    # A clean start prints Samvad's own lines: not gRPC's fork notices, nor Ray's and Serve's
    # INFO lines (their logs are in /tmp/ray/session_latest/logs), nor a platformdirs notice.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")

    from deployments.haproxy import ingress_env

    try:
        mode_env = ingress_env(ingress)
    except (ValueError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--ingress") from exc
    s = _servers(_settings(config), caches=True)

    async def prepare() -> tuple[str | None, list[str]]:
        repo = await _repo(s)  # applies migrations
        try:
            keys = await repo.list_keys()
            if not keys:
                _, key = await repo.create_key("development")
                return key, []
            wide = [f"{k.id} ({k.name})" for k in keys if k.revoked_at is None and "*" in (k.knowledge_bases or [])]
            return None, wide
        finally:
            await repo.close()

    dev_key, wide = asyncio.run(prepare())
    if wide:
        console.print(
            f"[yellow]API keys that may use every knowledge base ('*'): {', '.join(wide)}. Keys made before "
            "knowledge bases were deny-by-default kept that; give each only the ones it needs "
            "(samvad keys create --kb NAME, then revoke the old key)[/yellow]"
        )
    from rag_index.build import ensure_index
    from samvad.embeddings import get_embedder

    with _bar("index") as bar:
        task = bar.add_task("checking index", total=None)
        live = ensure_index(
            s,
            get_embedder(s.embeddings),
            lambda d, t: bar.update(task, description="building index", completed=d, total=t),
        )
    if s.rag.store != "faiss":  # first start: the built folder becomes the store's live version
        from rag_index.stores.base import ensure_live

        console.print(
            f"{s.rag.store} index version {_on_store(s, s.rag.store, lambda store: ensure_live(store, live))} is live"
        )

    from deployments.serve_config import deployment_options, export_node_env
    from samvad import ray_node

    # Before Ray is imported: Serve reads its settings then, and Ray its auth mode (samvad/ray_node.py).
    secured = ray_node.node_env()
    os.environ.update(mode_env | secured)
    node_env = export_node_env(str(serve_config)) | mode_env | secured
    if ray_node.token_auth_off(secured):
        console.print(
            "[yellow]Ray's token auth is off (RAY_AUTH_MODE): anyone who can reach this machine can run code in "
            "Ray's processes[/yellow]"
        )

    import ray
    from ray import serve

    from deployments.app import build_app

    ray.init(
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        namespace="samvad",
        log_to_driver=False,
        logging_level=logging.WARNING,
        runtime_env={"env_vars": node_env},
    )
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    serve.start(http_options={"host": s.service.host, "port": s.service.port})
    serve.run(
        build_app(
            {
                "config": str(config) if config else None,
                "database_url": s.database_url,
                "redis_url": s.redis_url,
                "cache_redis_url": s.cache_redis_url,
                "deployment_options": deployment_options(str(serve_config)),
            }
        ),
        name=s.service.app_name,
        route_prefix="/",
    )
    base = f"http://{s.service.host}:{s.service.port}"
    console.print(
        f"[green]Samvad is up[/green] at {base}\n"
        f"  API docs       {base}/docs\n"
        f"  Ray dashboard  http://127.0.0.1:8265  (its Serve tab; Ray's token: ray get-auth-token)\n"
        f"  Ctrl-C drains live calls and stops"
    )
    if dev_key:
        console.print(f"development API key (shown once): [bold]{dev_key}[/bold]")
    stop = False

    def _stop(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not stop:
        time.sleep(0.5)
    _drain(s)
    console.print("shutting down")
    # Not `serve.shutdown()`: it kills Serve's controller while the driver's own calls to it are
    # pending, and Ray prints each as a failed task. Live calls were drained above; stopping Ray
    # stops every replica with it.
    ray.shutdown()
    from samvad.storage import embedded

    # Stop the embedded servers this command started; external ones (URLs set) are left alone.
    if not _settings(config).redis_url:
        embedded.stop_redis(s.data_dir)
        if not _settings(config).cache_redis_url:
            embedded.stop_redis(s.data_dir, "cache")
    if not _settings(config).database_url:
        embedded.stop_postgres(s.data_dir)


def _drain(s: Settings) -> None:
    """Before Serve stops: every ingress replica ends its live calls after the answer playing,
    telling callers how to resume; waits for them up to `voice.drain_s` (and a margin)."""
    import time

    import ray

    drain = drain_task()
    try:
        live = ray.get(drain.remote(s.service.app_name))
        deadline = time.monotonic() + s.voice.drain_s + 5
        while live and time.monotonic() < deadline:
            console.print(f"draining {live} live call(s)")
            time.sleep(1.0)
            live = ray.get(drain.remote(s.service.app_name))
    except Exception as exc:  # noqa: BLE001 - shutting down regardless
        console.print(f"[yellow]drain incomplete:[/yellow] {type(exc).__name__}")


def drain_task() -> Any:
    """`_drain_ingress` as a Ray task. Not run in this process: a handle here starts a Serve
    router thread that pings the replicas on its own: a ping still out when Ray stopped printed
    Serve's "Failed to get queue length", then Ray's warning of a `ray.init()` off the main
    thread. Its router runs in a loop of its own (the replicas' setting would need one running)."""
    import ray

    env = {"env_vars": {"RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "1"}}
    return ray.remote(num_cpus=0, max_retries=0, runtime_env=env)(_drain_ingress)


def _drain_ingress(app_name: str, on: bool = True) -> int:
    """Puts every ingress replica in drain mode (`on=False` takes it out); returns their live calls."""
    from ray import serve

    ingress = serve.get_deployment_handle("Ingress", app_name=app_name)
    return sum(ingress.broadcast("drain", on).results())


def main() -> None:
    app()
