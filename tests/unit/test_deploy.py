"""Deployment manifests: valid YAML/JSON, the RayService serves exactly serve_config.yaml's
applications, and the dashboard only queries metrics that exist."""

import json
import re

import pytest
import yaml

from deployments.haproxy import WRAPPER, ingress_env
from samvad import metrics
from samvad.settings import REPO_ROOT

pytestmark = pytest.mark.unit


def test_rayservice_matches_serve_config():
    doc = yaml.safe_load((REPO_ROOT / "deploy/kuberay/rayservice.yaml").read_text())
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayService"
    serve_v2 = yaml.safe_load(doc["spec"]["serveConfigV2"])
    local = yaml.safe_load((REPO_ROOT / "serve_config.yaml").read_text())
    assert serve_v2["applications"] == local["applications"]
    cluster = doc["spec"]["rayClusterConfig"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["resources"]["requests"]["cpu"] and cluster["workerGroupSpecs"][0]["maxReplicas"] >= 1
    for group in [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]:
        assert group["rayStartParams"]["metrics-export-port"] == "8080"
        env = {e["name"]: e.get("value") for e in group["template"]["spec"]["containers"][0]["env"]}
        # HAProxy ingress, as `samvad run`: the wrapper (deployments/haproxy.py) where pip puts scripts.
        assert set(ingress_env("haproxy")) <= set(env) and env["RAY_SERVE_HAPROXY_BINARY_PATH"].endswith("/" + WRAPPER)
    names = {d["name"] for d in local["applications"][0]["deployments"]}
    assert names == {"Ingress", "ASR", "LLM", "Retriever", "Translation", "TTS", "Sessions"}
    for d in local["applications"][0]["deployments"]:
        assert {
            "autoscaling_config",
            "max_ongoing_requests",
            "ray_actor_options",
            "graceful_shutdown_timeout_s",
        } <= set(d)


def test_prometheus_and_grafana():
    scrape = yaml.safe_load((REPO_ROOT / "deploy/prometheus/scrape.yml").read_text())
    assert {j["job_name"] for j in scrape["scrape_configs"]} == {"ray", "ray-pods"}
    dash = json.loads((REPO_ROOT / "deploy/grafana/samvad.json").read_text())
    used = set()
    for panel in dash["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            for name in re.findall(r"\b(ray_samvad_[a-z_]+)", target["expr"]):
                base = re.sub(r"_(bucket|count|sum)$", "", name.removeprefix("ray_"))
                assert base in metrics.SPECS, f"{panel['title']}: unknown metric {name}"
                used.add(base)
    # The series the operations issue asks for are all on the dashboard.
    assert {
        "samvad_turns_total",
        "samvad_first_audio_ms",
        "samvad_stage_ms",
        "samvad_provider_calls_total",
        "samvad_cache_total",
        "samvad_circuit_state",
        "samvad_live_voice_sessions",
        "samvad_cost_total",
        "samvad_guardrail_actions_total",
    } <= used


def test_select_families_keeps_whole_families():
    text = "\n".join(
        [
            "# HELP ray_samvad_turns_total turns",
            "# TYPE ray_samvad_turns_total counter",
            'ray_samvad_turns_total{outcome="complete"} 3.0',
            "# HELP ray_node_cpu cpu",
            "# TYPE ray_node_cpu gauge",
            "ray_node_cpu 1.0",
            "# TYPE ray_serve_num_router_requests_total counter",
            "ray_serve_num_router_requests_total 2.0",
        ]
    )
    out = metrics.select_families(text)
    assert 'ray_samvad_turns_total{outcome="complete"} 3.0' in out and "ray_serve_num_router_requests_total 2.0" in out
    assert "ray_node_cpu" not in out
