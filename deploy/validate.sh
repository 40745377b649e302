#!/usr/bin/env bash
# Checks deploy/: every Kubernetes manifest against the API schemas of a Kubernetes release with
# kubernetes-validate (PyPI; it carries the schemas, so the check itself needs no cluster and no network),
# strictly (unknown fields are errors); then the Prometheus and prometheus-adapter configurations inside the
# ConfigMaps parse as YAML and have the fields this deployment relies on. CI runs it (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SWIFTDIFFUSION_DEPLOY_VENV:-.build/deploy-venv}"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "kubernetes-validate==1.37.0"
fi
kubernetes_version="${SWIFTDIFFUSION_KUBERNETES_VERSION:-1.30.0}"
"$venv/bin/kubernetes-validate" --strict --no-warn -k "$kubernetes_version" deploy/kubernetes/*.yaml
"$venv/bin/python" - <<'PY'
import glob, sys, yaml

documents = [d for path in sorted(glob.glob("deploy/kubernetes/*.yaml")) for d in yaml.safe_load_all(open(path)) if d]
maps = {d["metadata"]["name"]: d for d in documents if d["kind"] == "ConfigMap"}
prometheus = yaml.safe_load(maps["swiftdiffusion-prometheus"]["data"]["prometheus.yml"])
job = prometheus["scrape_configs"][0]
assert job["kubernetes_sd_configs"][0]["role"] == "pod", "scrape pods"
assert any(r.get("target_label") == "__metrics_path__" for r in job["relabel_configs"]), "metrics path relabel"
adapter = yaml.safe_load(maps["swiftdiffusion-prometheus-adapter"]["data"]["config.yaml"])
assert adapter["externalRules"][0]["name"]["as"] == "swiftdiffusion_queue_depth"
hpa = next(d for d in documents if d["kind"] == "HorizontalPodAutoscaler")
assert hpa["spec"]["metrics"][0]["external"]["metric"]["name"] == "swiftdiffusion_queue_depth"
api = next(d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "swiftdiffusion-api")
container = api["spec"]["template"]["spec"]["containers"][0]
assert container["readinessProbe"]["httpGet"]["path"] == "/readyz" and container["livenessProbe"]["httpGet"]["path"] == "/healthz"
assert "--lease-seconds" in container["args"]
assert not any(a.startswith("--controlnet-worker") for a in container["args"]), "API replicas find workers in the store"
worker = next(d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "swiftdiffusion-controlnet-worker")
worker_container = worker["spec"]["template"]["spec"]["containers"][0]
args = worker_container["args"]
assert args[:3] == ["worker", "--role", "controlnet"], "a ControlNet worker"
assert args[args.index("--advertise") + 1] == "$(POD_IP):50051" and args[args.index("--listen") + 1] == "0.0.0.0:50051"
env = {e["name"]: e for e in worker_container["env"]}
assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
api_env = {e["name"]: e for e in container["env"]}
assert env["SWIFTDIFFUSION_STORE"]["valueFrom"] == api_env["SWIFTDIFFUSION_STORE"]["valueFrom"], "the workers register in the replicas' store"
print(f"deploy/: {len(documents)} Kubernetes objects valid; Prometheus and adapter configurations checked")
PY
