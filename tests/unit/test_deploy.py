"""Deployment manifests: valid YAML/JSON, the RayService serves exactly serve_config.yaml's
applications, and the dashboard only queries metrics that exist."""

import json
import re

import pytest
import yaml

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
    names = {d["name"] for d in local["applications"][0]["deployments"]}
    assert names == {"Ingress", "ASR", "LLM", "Retriever", "Translation", "TTS", "Store"}
    for d in local["applications"][0]["deployments"]:
        assert {"autoscaling_config", "max_ongoing_requests", "ray_actor_options", "graceful_shutdown_timeout_s"} <= set(d)


def test_prometheus_and_grafana():
    scrape = yaml.safe_load((REPO_ROOT / "deploy/prometheus/scrape.yml").read_text())
    assert {j["job_name"] for j in scrape["scrape_configs"]} == {"ray", "samvad-ingress"}
    dash = json.loads((REPO_ROOT / "deploy/grafana/samvad.json").read_text())
    ours = {m._name for m in vars(metrics).values() if hasattr(m, "_name")}
    for panel in dash["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"\b(samvad_[a-z_]+)", target["expr"]):
                base = re.sub(r"_(total|bucket|count|sum)$", "", name)
                assert base in ours, f"{panel['title']}: unknown metric {name}"
