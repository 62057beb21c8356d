"""Local fakes of the Pinecone data plane and of Weaviate's REST/GraphQL API, following what
each publishes for the calls they serve: auth headers and their failures, request bodies and
their limits, response and error shapes. State is in memory; vectors are searched exactly.

Pinecone (docs.pinecone.io/reference/api, 2026-07 data plane; the official `pinecone` SDK runs
against it): `Api-Key` auth, upsert (1,000 records and 2 MB per request, ids ≤ 512 characters,
the index's dimension, no all-zero vector, metadata ≤ 40 KB with string/number/bool/string-list
values), query (topK ≤ 10,000, metadata filters), fetch and delete (≤ 1,000 ids), fetch and
delete by metadata filter, describe_index_stats, namespaces. Errors are {"code", "message",
"details"} (401: "Unauthorized"). `lag_s` makes written records visible only after a delay, as
Pinecone's eventual consistency does.

Weaviate (weaviate.io/developers/weaviate/api/rest, 1.32+): bearer-key auth, readiness,
collections (`/v1/schema`), batch import with per-object errors, cursor listing with vectors,
batch delete by `where` filter, collection aliases, and the two GraphQL queries Samvad sends
(`Get` with `nearVector`, `Aggregate` count). Errors are {"error": [{"message"}]}.

Both: `down = True` answers 503 to everything, as a store in an outage.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

PINECONE_KEY = "pinecone-test-key"
WEAVIATE_KEY = "weaviate-test-key"
API_VERSIONS = {"2025-01", "2025-04", "2025-10", "2026-04", "2026-07"}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


# ---------------------------------------------------------------- Pinecone


def _pc_error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "details": []}, status_code=status)


def _holds(op: str, arg: Any, key: str, meta: dict[str, Any]) -> bool:
    value = meta.get(key)
    values = value if isinstance(value, list) else [value]
    if op == "$eq":
        return arg in values
    if op == "$ne":
        return arg not in values
    if op == "$in":
        return any(v in arg for v in values)
    if op == "$nin":
        return not any(v in arg for v in values)
    if op == "$exists":
        return (key in meta) == arg
    if op in ("$gt", "$gte", "$lt", "$lte"):
        if not isinstance(value, int | float):
            return False
        return {"$gt": value > arg, "$gte": value >= arg, "$lt": value < arg, "$lte": value <= arg}[op]
    raise ValueError(f"unsupported filter operator {op}")


def _matches(meta: dict[str, Any], flt: dict[str, Any]) -> bool:
    """Pinecone's metadata filter language."""
    for key, cond in flt.items():
        if key == "$and":
            if not all(_matches(meta, c) for c in cond):
                return False
            continue
        if key == "$or":
            if not any(_matches(meta, c) for c in cond):
                return False
            continue
        ops = cond if isinstance(cond, dict) else {"$eq": cond}
        if not all(_holds(op, arg, key, meta) for op, arg in ops.items()):
            return False
    return True


@dataclass
class PineconeState:
    dimension: int
    lag_s: float = 0.0
    down: bool = False
    # namespace -> id -> (values, metadata, visible_at)
    namespaces: dict[str, dict[str, tuple[np.ndarray, dict[str, Any], float]]] = field(default_factory=dict)
    calls: list[tuple[str, int]] = field(default_factory=list)  # (path, request bytes)
    versions: list[str] = field(default_factory=list)  # X-Pinecone-Api-Version seen

    def visible(self, namespace: str) -> dict[str, tuple[np.ndarray, dict[str, Any], float]]:
        now = time.monotonic()
        return {i: r for i, r in self.namespaces.get(namespace, {}).items() if r[2] <= now}


def pinecone_app(dimension: int) -> tuple[Starlette, PineconeState]:
    state = PineconeState(dimension)

    def guarded(handler):  # noqa: ANN001, ANN202
        async def endpoint(request: Request) -> Response:
            body = await request.body()
            state.calls.append((request.url.path, len(body)))
            if state.down:
                return _pc_error(503, 14, "Service unavailable")
            if request.headers.get("api-key") != PINECONE_KEY:
                return JSONResponse("Unauthorized", status_code=401)
            version = request.headers.get("x-pinecone-api-version")
            if version is not None:
                state.versions.append(version)
                if version not in API_VERSIONS:
                    return _pc_error(400, 3, f"Unsupported API version: {version}")
            try:
                data = json.loads(body) if body else {}
            except ValueError:
                return _pc_error(400, 3, "Invalid request body: not JSON")
            if len(body) > 2 * 1024 * 1024:
                return _pc_error(400, 3, f"Request size {len(body)} exceeds the maximum supported size of 2MB")
            try:
                return await handler(request, data)
            except ValueError as exc:
                return _pc_error(400, 3, str(exc))

        return endpoint

    def check_vector(values: Any) -> np.ndarray:
        if not isinstance(values, list) or not values:
            raise ValueError("Vector values are required for a dense index")
        if len(values) != state.dimension:
            raise ValueError(
                f"Vector dimension {len(values)} does not match the dimension of the index {state.dimension}"
            )
        vector = np.asarray(values, dtype=np.float32)
        if not np.any(vector):
            raise ValueError("Dense vectors must contain at least one non-zero value")
        return vector

    def check_metadata(meta: Any) -> dict[str, Any]:
        if meta is None:
            return {}
        if not isinstance(meta, dict):
            raise ValueError("Metadata must be an object")
        if len(json.dumps(meta).encode()) > 40 * 1024:
            raise ValueError("Metadata size exceeds the limit of 40960 bytes per vector")
        for key, value in meta.items():
            ok = isinstance(value, str | int | float | bool) or (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
            )
            if not ok:
                raise ValueError(f"Metadata value for field {key} must be a string, number, boolean or list of strings")
        return meta

    async def upsert(request: Request, data: dict[str, Any]) -> Response:
        vectors = data.get("vectors")
        if not isinstance(vectors, list) or not vectors:
            raise ValueError("vectors: at least one vector is required")
        if len(vectors) > 1000:
            raise ValueError(f"Batch size exceeds the limit of 1000 vectors per upsert request: {len(vectors)}")
        namespace = data.get("namespace", "")
        rows = {}
        for v in vectors:
            vid = v.get("id")
            if not isinstance(vid, str) or not 1 <= len(vid) <= 512:
                raise ValueError("Vector ID must be a string of 1 to 512 characters")
            rows[vid] = (
                check_vector(v.get("values")),
                check_metadata(v.get("metadata")),
                time.monotonic() + state.lag_s,
            )
        state.namespaces.setdefault(namespace, {}).update(rows)
        return JSONResponse({"upsertedCount": len(rows)})

    def record(vid: str, r: tuple[np.ndarray, dict[str, Any], float], values: bool, meta: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"id": vid}
        if values:
            out["values"] = r[0].tolist()
        if meta and r[1]:
            out["metadata"] = r[1]
        return out

    async def query(request: Request, data: dict[str, Any]) -> Response:
        top_k = data.get("topK")
        if not isinstance(top_k, int) or not 1 <= top_k <= 10000:
            raise ValueError("topK must be an integer between 1 and 10000")
        namespace = data.get("namespace", "")
        rows = state.visible(namespace)
        if "vector" in data:
            vector = check_vector(data["vector"])
        elif "id" in data:
            if data["id"] not in rows:
                return JSONResponse({"matches": [], "namespace": namespace, "usage": {"readUnits": 1}})
            vector = rows[data["id"]][0]
        else:
            raise ValueError("Either vector or id must be provided")
        flt = data.get("filter")
        scored = [(_cosine(vector, r[0]), vid, r) for vid, r in rows.items() if flt is None or _matches(r[1], flt)]
        scored.sort(key=lambda t: -t[0])
        matches = [
            {"score": s, **record(vid, r, bool(data.get("includeValues")), bool(data.get("includeMetadata")))}
            for s, vid, r in scored[:top_k]
        ]
        return JSONResponse({"matches": matches, "namespace": namespace, "usage": {"readUnits": 1 + len(rows) // 1000}})

    async def fetch(request: Request, data: dict[str, Any]) -> Response:
        ids = request.query_params.getlist("ids")
        if not ids:
            raise ValueError("ids: at least one id is required")
        if len(ids) > 1000:
            raise ValueError("Fetch request exceeds the limit of 1000 ids")
        namespace = request.query_params.get("namespace", "")
        rows = state.visible(namespace)
        found = {i: record(i, rows[i], True, True) for i in ids if i in rows}
        return JSONResponse({"vectors": found, "namespace": namespace, "usage": {"readUnits": 1}})

    async def fetch_by_metadata(request: Request, data: dict[str, Any]) -> Response:
        flt = data.get("filter")
        if not flt:
            raise ValueError("Empty filter provided for fetch by metadata request")
        limit = data.get("limit", 100)
        if not isinstance(limit, int) or not 1 <= limit <= 10000:
            raise ValueError("limit must be an integer between 1 and 10000")
        namespace = data.get("namespace", "")
        rows = sorted((i, r) for i, r in state.visible(namespace).items() if _matches(r[1], flt))
        start = int(data.get("paginationToken") or 0)
        page = rows[start : start + limit]
        out: dict[str, Any] = {
            "vectors": {i: record(i, r, True, True) for i, r in page},
            "namespace": namespace,
            "usage": {"readUnits": 1},
        }
        if start + limit < len(rows):
            out["pagination"] = {"next": str(start + limit)}
        return JSONResponse(out)

    async def delete(request: Request, data: dict[str, Any]) -> Response:
        selectors = [k for k in ("ids", "deleteAll", "filter") if data.get(k)]
        if len(selectors) != 1:
            raise ValueError("Exactly one of ids, deleteAll or filter must be provided")
        namespace = data.get("namespace", "")
        rows = state.namespaces.get(namespace, {})
        if "ids" in selectors:
            if len(data["ids"]) > 1000:
                raise ValueError("Delete request exceeds the limit of 1000 ids")
            for i in data["ids"]:
                rows.pop(i, None)
        elif "deleteAll" in selectors:
            rows.clear()
        else:
            for i in [i for i, r in rows.items() if _matches(r[1], data["filter"])]:
                del rows[i]
        return JSONResponse({})

    async def stats(request: Request, data: dict[str, Any]) -> Response:
        counts = {ns: {"vectorCount": len(state.visible(ns))} for ns in state.namespaces if state.visible(ns)}
        return JSONResponse(
            {
                "namespaces": counts,
                "dimension": state.dimension,
                "indexFullness": 0.0,
                "totalVectorCount": sum(c["vectorCount"] for c in counts.values()),
                "metric": "cosine",
                "vectorType": "dense",
            }
        )

    async def namespace(request: Request, data: dict[str, Any]) -> Response:
        name = request.path_params["namespace"]
        if name not in state.namespaces:
            return _pc_error(404, 5, f"Namespace {name} not found")
        if request.method == "DELETE":
            del state.namespaces[name]
            return Response(status_code=202)
        return JSONResponse({"name": name, "record_count": len(state.visible(name))})

    app = Starlette(
        routes=[
            Route("/vectors/upsert", guarded(upsert), methods=["POST"]),
            Route("/query", guarded(query), methods=["POST"]),
            Route("/vectors/fetch", guarded(fetch), methods=["GET"]),
            Route("/vectors/fetch_by_metadata", guarded(fetch_by_metadata), methods=["POST"]),
            Route("/vectors/delete", guarded(delete), methods=["POST"]),
            Route("/describe_index_stats", guarded(stats), methods=["POST"]),
            Route("/namespaces/{namespace}", guarded(namespace), methods=["GET", "DELETE"]),
        ]
    )
    return app, state


# ---------------------------------------------------------------- Weaviate


def _wv_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": [{"message": message}]}, status_code=status)


def _where(props: dict[str, Any], where: dict[str, Any]) -> bool:
    op = where.get("operator")
    if op == "And":
        return all(_where(props, w) for w in where["operands"])
    if op == "Or":
        return any(_where(props, w) for w in where["operands"])
    value = props.get(where["path"][0])
    if op == "Equal":
        return value == next(v for k, v in where.items() if k.startswith("value"))
    if op == "ContainsAny":
        wanted = next(v for k, v in where.items() if k.startswith("value"))
        return value in wanted or (isinstance(value, list) and any(v in wanted for v in value))
    raise ValueError(f"unsupported where operator {op}")


@dataclass
class WeaviateState:
    down: bool = False
    classes: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> class definition
    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # class -> id -> object
    aliases: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, int]] = field(default_factory=list)


CLASS_NAME = re.compile(r"^[A-Z][_0-9A-Za-z]*$")
GET_NEAR = re.compile(
    r"^\{\s*Get\s*\{\s*(\w+)\s*\(\s*nearVector:\s*\{\s*vector:\s*\[([^\]]*)\]\s*\}\s*,\s*limit:\s*(\d+)\s*\)\s*\{([^{}]*)_additional\s*\{\s*distance\s*\}\s*\}\s*\}\s*\}$"
)
AGGREGATE = re.compile(r"^\{\s*Aggregate\s*\{\s*(\w+)\s*\{\s*meta\s*\{\s*count\s*\}\s*\}\s*\}\s*\}$")


def weaviate_app() -> tuple[Starlette, WeaviateState]:
    state = WeaviateState()

    def guarded(handler):  # noqa: ANN001, ANN202
        async def endpoint(request: Request) -> Response:
            body = await request.body()
            state.calls.append((request.url.path, len(body)))
            if state.down:
                return _wv_error(503, "service unavailable")
            if request.headers.get("authorization") != f"Bearer {WEAVIATE_KEY}":
                return JSONResponse(
                    {"code": 401, "message": "unauthorized: invalid api key: key not found"}, status_code=401
                )
            try:
                data = json.loads(body) if body else {}
            except ValueError:
                return _wv_error(422, "could not parse the request body as JSON")
            try:
                return await handler(request, data)
            except (ValueError, KeyError) as exc:
                return _wv_error(422, str(exc))

        return endpoint

    def resolve(name: str) -> str:
        return state.aliases.get(name, name)

    async def ready(request: Request, data: dict[str, Any]) -> Response:
        return Response(status_code=200)

    async def schema_create(request: Request, data: dict[str, Any]) -> Response:
        name = data.get("class", "")
        if not CLASS_NAME.match(name):
            raise ValueError(f"'{name}' is not a valid class name")
        if name in state.classes or name in state.aliases:
            raise ValueError(f"class name {name} already exists")
        for p in data.get("properties", []):
            if p.get("dataType", [None])[0] not in {"text", "int", "number", "boolean", "text[]", "uuid", "date"}:
                raise ValueError(f"property {p.get('name')}: unknown data type {p.get('dataType')}")
        state.classes[name] = data | {"vectorizer": data.get("vectorizer", "none")}
        state.objects[name] = {}
        return JSONResponse(state.classes[name])

    async def schema_one(request: Request, data: dict[str, Any]) -> Response:
        name = resolve(request.path_params["name"])
        if request.method == "DELETE":
            state.classes.pop(name, None)
            state.objects.pop(name, None)
            return Response(status_code=200)
        if name not in state.classes:
            return Response(status_code=404)
        return JSONResponse(state.classes[name])

    async def batch_import(request: Request, data: dict[str, Any]) -> Response:
        results = []
        for obj in data.get("objects", []):
            name = obj.get("class")
            error = None
            if name not in state.classes:
                error = f"class '{name}' not present in schema"
            else:
                known = {p["name"] for p in state.classes[name].get("properties", [])}
                unknown = set(obj.get("properties", {})) - known
                stored = state.objects[name]
                dims = {len(o["vector"]) for o in stored.values()}
                if unknown:
                    error = f"no such prop with name '{sorted(unknown)[0]}' found in class '{name}' in the schema"
                elif not isinstance(obj.get("vector"), list) or not obj["vector"]:
                    error = "a vector is required: the collection has no vectorizer"
                elif dims and len(obj["vector"]) not in dims:
                    error = (
                        f"new node has a vector with length {len(obj['vector'])}. "
                        f"Existing nodes have vectors with length {dims.pop()}"
                    )
            out = dict(obj)
            if error is None:
                oid = obj.get("id") or f"{len(state.objects[name]):032x}"
                out["id"] = oid
                state.objects[name][oid] = {
                    "id": oid,
                    "class": name,
                    "properties": obj.get("properties", {}),
                    "vector": obj["vector"],
                }
                out["result"] = {}
            else:
                out["result"] = {"errors": {"error": [{"message": error}]}}
            results.append(out)
        return JSONResponse(results)

    async def batch_delete(request: Request, data: dict[str, Any]) -> Response:
        match = data["match"]
        name = resolve(match["class"])
        if name not in state.classes:
            raise ValueError(f"class '{match['class']}' not present in schema")
        gone = [i for i, o in state.objects[name].items() if _where(o["properties"], match["where"])]
        if not data.get("dryRun"):
            for i in gone:
                del state.objects[name][i]
        results = {"matches": len(gone), "limit": 10000, "successful": len(gone), "failed": 0}
        return JSONResponse(
            {
                "match": match,
                "output": data.get("output", "minimal"),
                "dryRun": bool(data.get("dryRun")),
                "results": results,
            }
        )

    async def list_objects(request: Request, data: dict[str, Any]) -> Response:
        q = request.query_params
        name = resolve(q.get("class", ""))
        if name not in state.classes:
            raise ValueError(f"class '{q.get('class')}' not present in schema")
        limit = int(q.get("limit", 25))
        rows = sorted(state.objects[name].values(), key=lambda o: o["id"])
        if q.get("after"):
            rows = [o for o in rows if o["id"] > q["after"]]
        with_vector = "vector" in (q.get("include") or "").split(",")
        page = [{k: v for k, v in o.items() if k != "vector" or with_vector} for o in rows[:limit]]
        return JSONResponse({"objects": page, "totalResults": len(page)})

    async def graphql(request: Request, data: dict[str, Any]) -> Response:
        query = data.get("query", "")
        if m := GET_NEAR.match(query):
            name, values, limit, fields = m.group(1), m.group(2), int(m.group(3)), m.group(4).split()
            target = resolve(name)
            if target not in state.classes:
                return JSONResponse({"errors": [{"message": f'Cannot query field "{name}" on type "GetObjectsObj".'}]})
            vector = np.asarray([float(x) for x in values.split(",")], dtype=np.float32)
            scored = sorted(
                (
                    (1.0 - _cosine(vector, np.asarray(o["vector"], dtype=np.float32)), o)
                    for o in state.objects[target].values()
                ),
                key=lambda t: t[0],
            )[:limit]
            rows = [{f: o["properties"].get(f) for f in fields} | {"_additional": {"distance": d}} for d, o in scored]
            return JSONResponse({"data": {"Get": {name: rows}}})
        if m := AGGREGATE.match(query):
            name = m.group(1)
            target = resolve(name)
            if target not in state.classes:
                return JSONResponse(
                    {"errors": [{"message": f'Cannot query field "{name}" on type "AggregateObjectsObj".'}]}
                )
            return JSONResponse({"data": {"Aggregate": {name: [{"meta": {"count": len(state.objects[target])}}]}}})
        return JSONResponse(
            {"errors": [{"message": "Syntax Error GraphQL request: query not understood by this fake"}]}
        )

    async def aliases(request: Request, data: dict[str, Any]) -> Response:
        if request.method == "GET":  # the aliases, or those of one collection (?class=)
            of = request.query_params.get("class")
            found = [{"alias": a, "class": c} for a, c in state.aliases.items() if of is None or c == of]
            return JSONResponse({"aliases": found})
        alias, target = data["alias"], data["class"]
        if target not in state.classes:
            raise ValueError(f"target class {target} does not exist")
        if alias in state.aliases or alias in state.classes:
            raise ValueError(f"alias {alias} already exists")
        state.aliases[alias] = target
        return JSONResponse({"alias": alias, "class": target})

    async def alias_one(request: Request, data: dict[str, Any]) -> Response:
        alias = request.path_params["alias"]
        if alias not in state.aliases:
            return _wv_error(404, f"alias {alias} not found")
        if request.method == "PUT":
            if data["class"] not in state.classes:
                raise ValueError(f"target class {data['class']} does not exist")
            state.aliases[alias] = data["class"]
        elif request.method == "DELETE":
            del state.aliases[alias]
            return Response(status_code=204)
        return JSONResponse({"alias": alias, "class": state.aliases[alias]})

    app = Starlette(
        routes=[
            Route("/v1/.well-known/ready", guarded(ready), methods=["GET"]),
            Route("/v1/schema", guarded(schema_create), methods=["POST"]),
            Route("/v1/schema/{name}", guarded(schema_one), methods=["GET", "DELETE"]),
            Route("/v1/batch/objects", guarded(batch_import), methods=["POST"]),
            Route("/v1/batch/objects", guarded(batch_delete), methods=["DELETE"]),
            Route("/v1/objects", guarded(list_objects), methods=["GET"]),
            Route("/v1/graphql", guarded(graphql), methods=["POST"]),
            Route("/v1/aliases", guarded(aliases), methods=["GET", "POST"]),
            Route("/v1/aliases/{alias}", guarded(alias_one), methods=["GET", "PUT", "DELETE"]),
        ]
    )
    return app, state
