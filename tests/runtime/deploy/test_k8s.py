"""`chutebox plan --emit k8s`: every document validated offline against Kubernetes' own
schemas (kubernetes-validate) and LeaderWorkerSet's CRD, and each pod's command played back
from the environment LWS gives it."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from jsonschema import Draft7Validator

from engines.vllm import VLLMBackend
from images.recipes import RECIPES
from runtime.cli import build_parser, main, read_settings
from runtime.config.settings import Settings, load_settings
from runtime.deploy.k8s import CONFIG_FILE, manifests, render
from runtime.fleet.backend import LaunchRequest
from runtime.serve import plan_for_settings

K8S_VERSION = "1.33.0"
CRD = (
    Path(__file__).resolve().parents[4]
    / "shared"
    / "k8s"
    / ("leaderworkerset.x-k8s.io_leaderworkersets.yaml")
)
NODE = "8xH100-80GB"
CONFIG = """
[[chutes]]
name = "Llama-3.1-405B"
model = "meta-llama/Llama-3.1-405B-Instruct"
revision = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
params = "405B"
nodes = 2

[[chutes]]
name = "qwen-7b"
model = "Qwen/Qwen2.5-7B-Instruct"
revision = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
params = "7B"
replicas = 2

[[chutes]]
name = "elsewhere"
model = "m"
url = ["http://10.0.0.9:8000"]
"""
IMAGES = {name: recipe().uid for name, recipe in RECIPES.items()}
LEADER = "llama-3-1-405b-0.llama-3-1-405b.default"


def settings_from(tmp_path: Path, text: str = CONFIG, **flags: Any) -> Settings:
    config = tmp_path / "chutes.toml"
    config.write_text(text)
    return load_settings(flags, {}, config)


def documents(settings: Settings, nodes: int = 3) -> list[dict[str, Any]]:
    plan = plan_for_settings(settings, {}, [NODE] * nodes)
    return manifests(plan, settings, IMAGES)


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def lws_templates(lws: dict[str, Any]) -> list[dict[str, Any]]:
    template = lws["spec"]["leaderWorkerTemplate"]
    return [template["leaderTemplate"], template["workerTemplate"]]


def test_core_documents_pass_kubernetes_own_schemas_strictly(tmp_path: Path) -> None:
    docs = documents(settings_from(tmp_path))
    assert [d["kind"] for d in docs] == ["ConfigMap", "LeaderWorkerSet", "Service",
                                         "ConfigMap", "Deployment", "Service"]  # fmt: skip
    for doc in docs:
        if doc["kind"] != "LeaderWorkerSet":
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    # LWS embeds plain pod templates: checked as Kubernetes' own PodTemplate kind.
    for template in lws_templates(by_kind(docs, "LeaderWorkerSet")[0]):
        pod = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"},
               "template": template}  # fmt: skip
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_the_validator_finds_a_broken_document(tmp_path: Path) -> None:
    deployment = by_kind(documents(settings_from(tmp_path)), "Deployment")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def unknown_fields(value: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Fields the API server would prune as unknown (what `kubectl apply --validate=strict`
    refuses): a structural schema's jsonschema check lets them through."""
    if isinstance(value, dict) and "properties" in schema:
        found = []
        for key, item in value.items():
            if key in schema["properties"]:
                found += unknown_fields(item, schema["properties"][key], f"{where}.{key}")
            elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                found.append(f"{where}.{key}")
        return found
    if isinstance(value, list) and "items" in schema:
        return [f for i, item in enumerate(value)
                for f in unknown_fields(item, schema["items"], f"{where}[{i}]")]  # fmt: skip
    return []


@pytest.mark.skipif(not CRD.exists(), reason="the LeaderWorkerSet CRD lies in ../shared/k8s")
def test_the_leader_worker_set_passes_its_crd_schema(tmp_path: Path) -> None:
    crd = yaml.safe_load(CRD.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = version["schema"]["openAPIV3Schema"]
    lws = by_kind(documents(settings_from(tmp_path)), "LeaderWorkerSet")[0]
    assert lws["apiVersion"] == f"{crd['spec']['group']}/v1"
    errors = [e.message for e in Draft7Validator(schema).iter_errors(lws)]
    assert errors == []
    assert unknown_fields(lws, schema) == []
    lws["spec"]["leaderWorkerTemplate"]["size"] = "two"
    lws["spec"]["leaderWorkerTemplate"]["sizes"] = 2
    assert list(Draft7Validator(schema).iter_errors(lws))
    assert unknown_fields(lws, schema) == [".spec.leaderWorkerTemplate.sizes"]


def test_keys_are_referenced_from_a_secret_never_written(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, api_keys=["cpk_do_not_leak"], hf_token="hf_do_not_leak")
    text = render(documents(settings))
    assert "do_not_leak" not in text
    for doc in yaml.safe_load_all(text):
        for template in _templates(doc):
            env = {e["name"]: e for e in template["spec"]["containers"][0]["env"]}
            assert env["CHUTEBOX_API_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == "chutebox"
            assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True


def _templates(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] == "Deployment":
        return [doc["spec"]["template"]]
    return lws_templates(doc) if doc["kind"] == "LeaderWorkerSet" else []


def expand(args: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' $(VAR) expansion of a container's arguments."""
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in args]


def test_each_pod_of_the_group_starts_its_own_ranks(tmp_path: Path) -> None:
    """Played back as LWS runs them: each pod's arguments expanded from its LWS variables,
    read by chutebox's own CLI with the ConfigMap's config, planned on the GPUs the pod asks
    for, and turned into the engine command that pod would run."""
    docs = documents(settings_from(tmp_path))
    lws = by_kind(docs, "LeaderWorkerSet")[0]
    size = lws["spec"]["leaderWorkerTemplate"]["size"]
    config = tmp_path / "pod-config.yaml"
    config.write_text(by_kind(docs, "ConfigMap")[0]["data"]["config.yaml"])
    leader, worker = lws_templates(lws)
    world = set()
    for index in range(size):
        container = (leader if index == 0 else worker)["spec"]["containers"][0]
        env = {"LWS_WORKER_INDEX": str(index), "LWS_LEADER_ADDRESS": LEADER,
               "LWS_GROUP_SIZE": str(size)}  # fmt: skip
        args = [str(config) if a == CONFIG_FILE else a for a in expand(container["args"], env)]
        settings = read_settings(build_parser().parse_args(["serve", *args]))
        assert (settings.node_rank, settings.leader_address) == (index, LEADER)
        chute = settings.chutes[0]
        gpus = container["resources"]["limits"]["nvidia.com/gpu"]
        layout = plan_for_settings(settings, {}, [f"{gpus}xH100-80GB"])
        replica = layout.for_chute(chute.served_name).replicas[0]
        assert replica.nodes == size and replica.tp * replica.pp == size * gpus
        request = LaunchRequest(
            model_path="/m", served_name=chute.served_name, api_key="k", python="py",
            device="cuda", port=1, tensor_parallel=replica.tp, pipeline_parallel=replica.pp,
            nodes=chute.nodes, node_rank=settings.node_rank,
            master_addr=settings.leader_address, master_port=chute.dist_port,
        )  # fmt: skip
        argv = shlex.join(VLLMBackend().launch(request).argv)
        assert f"--nnodes {size} --node-rank {index} --master-addr {LEADER}" in argv
        assert ("--headless" in argv) == (index > 0)
        assert ("api_server" in argv) == (index == 0)
        world.add((replica.tp, replica.pp))
    assert world == {(8, 2)}  # every pod agrees on the engine's shape


def test_the_leaders_gateway_is_the_service_and_the_probes_are_chuteboxs(tmp_path: Path) -> None:
    docs = documents(settings_from(tmp_path))
    lws, deployment = by_kind(docs, "LeaderWorkerSet")[0], by_kind(docs, "Deployment")[0]
    service = by_kind(docs, "Service")[0]
    assert service["spec"]["selector"]["leaderworkerset.sigs.k8s.io/worker-index"] == "0"
    leader, worker = (t["spec"]["containers"][0] for t in lws_templates(lws))
    assert leader["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert leader["livenessProbe"]["httpGet"]["path"] == "/health"
    assert "readinessProbe" not in worker and "ports" not in worker
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2  # both replicas' GPUs
    assert container["image"] == "chutebox/vllm:0.1.0"
    names = [d["metadata"]["name"] for d in docs]
    assert "elsewhere" not in " ".join(names)  # a chute at a url runs elsewhere


def test_pcie_gpus_carry_the_nccl_setting_the_plan_chose(tmp_path: Path) -> None:
    text = CONFIG.split("[[chutes]]")[1].replace('"405B"', '"70B"')
    settings = settings_from(tmp_path, "[[chutes]]" + text)
    plan = plan_for_settings(settings, {}, ["8x4090"] * 2)
    lws = by_kind(manifests(plan, settings, IMAGES), "LeaderWorkerSet")[0]
    env = lws_templates(lws)[1]["spec"]["containers"][0]["env"]
    assert {"name": "NCCL_P2P_DISABLE", "value": "1"} in env


def test_the_cli_prints_the_manifests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "chutes.toml"
    config.write_text(CONFIG)
    assert main(["plan", "--config", str(config), "--gpus", NODE, "--gpus", NODE, "--gpus",
                 NODE, "--emit", "k8s"]) == 0  # fmt: skip
    kinds = [d["kind"] for d in yaml.safe_load_all(capsys.readouterr().out)]
    assert kinds.count("LeaderWorkerSet") == 1 and kinds.count("Deployment") == 1
