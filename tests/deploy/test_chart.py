"""The helm chart (helm/) deploys what the README promises: every setting of its settings
table reaches both the api and the workers, keys come from a Secret, the rules from a
ConfigMap passed with --rules, each worker keeps RocksDB on a volume of its own and has
time to stop cleanly, and production values add autoscaling, disruption budgets and the
ServiceMonitor. It renders the chart with the helm that scripts/deploy-check.sh builds."""

from __future__ import annotations

import base64
import json
import posixpath
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm"
HELM = ROOT / ".tools" / "bin" / "helm"
PRODUCTION = CHART / "ci" / "production-values.yaml"
KUBE_VERSION = "1.37.0"
RELEASE = "t"

# A worker stopped by SIGTERM finishes its batch (at most 2,000 events: about 3 s at the
# 630 events/s of the skewed benchmark), waits for its changelog records to be
# acknowledged, commits its offsets, closes RocksDB and marks the stop clean; mode, under
# faust, gives each service up to 60 s (Service.shutdown_timeout) to stop. Killed sooner,
# the worker drops its tables at the next start and restores them from the changelog.
CLEAN_SHUTDOWN_SECONDS = 60 + 30

Doc = dict[str, Any]


@cache
def render(*args: str) -> tuple[Doc, ...]:
    if not HELM.exists():
        pytest.fail(
            f"{HELM.relative_to(ROOT)} is missing: run `bash scripts/deploy-check.sh`, which"
            " builds it (scripts/test.sh runs it before pytest)"
        )
    out = subprocess.run(
        [str(HELM), "template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def render_failure(*args: str) -> str:
    render()  # fails with the message above when helm is missing
    out = subprocess.run(
        [str(HELM), "template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode != 0, "the chart rendered, but should have refused these values"
    return out.stderr


def production(*more: str) -> tuple[Doc, ...]:
    return render("--values", str(PRODUCTION), *more)


def one(docs: tuple[Doc, ...], kind: str, name_suffix: str = "") -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, got {len(found)}"
    return found[0]


def kinds(docs: tuple[Doc, ...]) -> set[str]:
    return {d["kind"] for d in docs}


def container(workload: Doc) -> Doc:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    return only


def env_of(workload: Doc) -> dict[str, Doc]:
    return {var["name"]: var for var in container(workload).get("env", [])}


def api(docs: tuple[Doc, ...]) -> Doc:
    return one(docs, "Deployment", "-api")


def worker(docs: tuple[Doc, ...]) -> Doc:
    return one(docs, "StatefulSet", "-worker")


def readme_settings() -> list[str]:
    """The AVAIL_* variables of the README's settings table (its first column)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Settings", 1)[1].split("\n#", 1)[0]
    names = re.findall(r"^\| `(AVAIL_[A-Z0-9_]+)` \|", section, flags=re.MULTILINE)
    assert len(names) >= 10, "the README's settings table was not found where expected"
    return names


def values() -> Doc:
    loaded: Doc = yaml.safe_load((CHART / "values.yaml").read_text())
    return loaded


BOTH = pytest.mark.parametrize(
    "values_args", [(), ("--values", str(PRODUCTION))], ids=["default", "production"]
)


def test_values_yaml_carries_every_setting_of_the_readme() -> None:
    missing = set(readme_settings()) - set(values()["settings"])
    assert not missing, f"settings of the README table missing from helm/values.yaml: {missing}"


@BOTH
def test_every_readme_setting_reaches_the_api_and_the_worker_containers(
    values_args: tuple[str, ...],
) -> None:
    docs = render(*values_args)
    for workload, not_given in ((api(docs), set()), (worker(docs), {"AVAIL_API_KEYS"})):
        missing = set(readme_settings()) - set(env_of(workload)) - not_given
        assert not missing, f"{workload['metadata']['name']} lacks {missing}"


def test_a_setting_changed_in_values_reaches_both_containers() -> None:
    docs = render("--set", "settings.AVAIL_CACHE_SKUS=123456")
    for workload in (api(docs), worker(docs)):
        assert env_of(workload)["AVAIL_CACHE_SKUS"]["value"] == "123456"


@BOTH
def test_api_keys_come_from_the_secret_and_reach_the_api_only(values_args: tuple[str, ...]) -> None:
    docs = render(*values_args)
    var = env_of(api(docs))["AVAIL_API_KEYS"]
    assert "value" not in var
    assert var["valueFrom"]["secretKeyRef"]["key"] == "AVAIL_API_KEYS"
    # A worker serves no API: it is not given the keys at all.
    assert "AVAIL_API_KEYS" not in env_of(worker(docs))
    secret_name = env_of(api(docs))["AVAIL_API_KEYS"]["valueFrom"]["secretKeyRef"]["name"]
    rendered_secrets = [d for d in docs if d["kind"] == "Secret"]
    if values_args:  # production names a Secret the operator manages
        assert secret_name == yaml.safe_load(PRODUCTION.read_text())["secret"]["existingSecret"]
        assert not rendered_secrets
    else:
        assert [s["metadata"]["name"] for s in rendered_secrets] == [secret_name]


def test_api_keys_given_in_values_are_in_the_secret_and_never_in_a_pod_spec() -> None:
    keys = "sf-7f3a:read,ops-c0d1:admin"
    escaped = keys.replace(",", "\\,")  # helm's --set splits on unescaped commas
    docs = render("--set-string", f"settings.AVAIL_API_KEYS={escaped}")
    secret = one(docs, "Secret")
    assert base64.b64decode(secret["data"]["AVAIL_API_KEYS"]).decode() == keys
    for workload in (api(docs), worker(docs)):
        assert "sf-7f3a" not in json.dumps(workload)


def test_without_keys_the_chart_makes_an_admin_key_so_the_api_may_bind_every_address() -> None:
    docs = render()
    assert env_of(api(docs))["AVAIL_HOST"]["value"] == "0.0.0.0"
    generated = base64.b64decode(one(docs, "Secret")["data"]["AVAIL_API_KEYS"]).decode()
    assert re.fullmatch(r"admin-[A-Za-z0-9]{32}:admin", generated)


def test_a_loopback_host_is_refused() -> None:
    assert "loopback" in render_failure("--set", "settings.AVAIL_HOST=127.0.0.1")


@BOTH
def test_the_worker_keeps_rocksdb_on_a_volume_of_its_own_at_the_data_dir(
    values_args: tuple[str, ...],
) -> None:
    statefulset = worker(render(*values_args))
    data_dir = env_of(statefulset)["AVAIL_DATA_DIR"]["value"]
    claims = {c["metadata"]["name"] for c in statefulset["spec"]["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in container(statefulset)["volumeMounts"]}
    assert mounts.get(data_dir) in claims


def test_the_volume_follows_a_data_dir_set_in_values() -> None:
    statefulset = worker(render("--set", "settings.AVAIL_DATA_DIR=/data/tables"))
    mounts = {m["mountPath"]: m["name"] for m in container(statefulset)["volumeMounts"]}
    assert mounts.get("/data/tables") == "data"


@BOTH
def test_the_worker_has_time_to_commit_and_stop_cleanly(values_args: tuple[str, ...]) -> None:
    spec = worker(render(*values_args))["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] >= CLEAN_SHUTDOWN_SECONDS


@BOTH
def test_the_rules_configmap_is_mounted_and_passed_to_the_api_with_rules(
    values_args: tuple[str, ...],
) -> None:
    docs = render(*values_args)
    deployment = api(docs)
    args = container(deployment)["args"]
    assert args[0] == "api"
    rules_file = args[args.index("--rules") + 1]
    assert env_of(deployment)["AVAIL_RULES_FILE"]["value"] == rules_file
    mounts = {m["name"]: m["mountPath"] for m in container(deployment)["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    configmap = one(docs, "ConfigMap", "-rules")
    assert mounts["rules"] == posixpath.dirname(rules_file)
    assert volumes["rules"]["configMap"]["name"] == configmap["metadata"]["name"]
    document = json.loads(configmap["data"][posixpath.basename(rules_file)])
    source = yaml.safe_load(PRODUCTION.read_text()) if values_args else values()
    assert document == source["rules"]["document"]


def test_an_empty_rules_file_setting_leaves_the_rules_to_put() -> None:
    docs = render("--set", "settings.AVAIL_RULES_FILE=")
    assert not [d for d in docs if d["metadata"]["name"].endswith("-rules")]
    assert "--rules" not in container(api(docs))["args"]


def test_a_rules_change_rolls_the_pods() -> None:
    def checksum(docs: tuple[Doc, ...]) -> str:
        annotations: dict[str, str] = api(docs)["spec"]["template"]["metadata"]["annotations"]
        return annotations["checksum/rules"]

    changed = render("--set", "rules.document.default_location_type=dc")
    assert checksum(changed) != checksum(render())


def test_production_values_render_autoscaling_disruption_budgets_and_the_servicemonitor() -> None:
    docs = production()
    assert {"HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor"} <= kinds(docs)
    deployment = api(docs)
    assert "replicas" not in deployment["spec"], "the HPA owns the api's replica count"
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    for workload in (deployment, worker(docs)):
        pod_labels = workload["spec"]["template"]["metadata"]["labels"]
        budgets = [
            d
            for d in docs
            if d["kind"] == "PodDisruptionBudget"
            and d["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        ]
        assert len(budgets) == 1, f"{workload['metadata']['name']}: {len(budgets)} budgets"


def test_the_servicemonitor_scrapes_the_api_and_every_worker() -> None:
    docs = production()
    monitor = one(docs, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"].items()
    scraped = {e["port"] for e in monitor["spec"]["endpoints"]}
    services = [d for d in docs if d["kind"] == "Service"]
    ports = {
        p["name"]
        for s in services
        if selector <= s["metadata"]["labels"].items()
        for p in s["spec"]["ports"]
    }
    assert scraped == {"http", "metrics"} <= ports
    metrics_port = int(env_of(worker(docs))["AVAIL_METRICS_PORT"]["value"])
    assert container(worker(docs))["ports"] == [
        {"name": "metrics", "containerPort": metrics_port, "protocol": "TCP"}
    ]


def test_default_values_need_no_prometheus_operator_and_no_autoscaler() -> None:
    assert not {"ServiceMonitor", "HorizontalPodAutoscaler"} & kinds(render())


def test_standby_replicas_need_a_worker_to_live_on() -> None:
    assert "standby" in render_failure("--set", "worker.replicas=1")


@BOTH
def test_pods_run_as_the_images_non_root_user(values_args: tuple[str, ...]) -> None:
    docs = render(*values_args)
    for workload in (api(docs), worker(docs)):
        pod = workload["spec"]["template"]["spec"]["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert pod["runAsUser"] == 10001  # the Dockerfile's APP_UID
        assert container(workload)["securityContext"]["allowPrivilegeEscalation"] is False
    assert "ARG APP_UID=10001" in (ROOT / "Dockerfile").read_text()


def exported_metric_names() -> set[str]:
    pattern = re.compile(r"(?:Counter|Gauge|Histogram)\(\s*\"(availability_[a-z_]+)\"")
    names: set[str] = set()
    for source in ("api/metrics.py", "streams/metrics.py"):
        names.update(pattern.findall((ROOT / source).read_text()))
    assert names, "no metric definitions found in api/metrics.py and streams/metrics.py"
    return names


def test_the_dashboard_queries_only_metrics_the_service_exports() -> None:
    dashboard = json.loads((CHART / "dashboards" / "availability.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {
        re.sub(r"_(bucket|sum|count|total)$", "", name)
        for expr in exprs
        for name in re.findall(r"\b(availability_[a-z_]+)\b", expr)
    }
    assert used, "the dashboard has no queries"
    assert used <= exported_metric_names(), used - exported_metric_names()
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("sync lag", "outcome", "dead-letter", "oversold", "drift", "backlog", "latency"):
        assert topic in titles


def test_the_dashboard_is_shipped_in_a_configmap() -> None:
    configmap = one(render(), "ConfigMap", "-dashboard")
    assert json.loads(configmap["data"]["availability.json"])["uid"] == "availability-service"


def test_extra_volumes_bring_tls_files_to_the_api_and_the_worker() -> None:
    docs = render(
        "--set", "extraVolumes[0].name=kafka-tls",
        "--set", "extraVolumes[0].secret.secretName=kafka-client-tls",
        "--set", "extraVolumeMounts[0].name=kafka-tls",
        "--set", "extraVolumeMounts[0].mountPath=/etc/availability/kafka",
        "--set", "settings.AVAIL_KAFKA_CA_FILE=/etc/availability/kafka/ca.pem",
    )  # fmt: skip
    for workload in (api(docs), worker(docs)):
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
        assert volumes["kafka-tls"]["secret"]["secretName"] == "kafka-client-tls"
        mounts = {m["name"]: m["mountPath"] for m in container(workload)["volumeMounts"]}
        assert mounts["kafka-tls"] == "/etc/availability/kafka"
        assert env_of(workload)["AVAIL_KAFKA_CA_FILE"]["value"] == "/etc/availability/kafka/ca.pem"


def test_secret_settings_reach_the_pods_from_the_secret_only() -> None:
    docs = render("--set-string", "settings.AVAIL_KAFKA_SASL_PASSWORD=kafka-pw-77")
    assert "kafka-pw-77" not in json.dumps([api(docs), worker(docs)])
    for workload in (api(docs), worker(docs)):
        for name in ("AVAIL_KAFKA_SASL_PASSWORD", "AVAIL_REDIS_PASSWORD"):
            assert env_of(workload)[name]["valueFrom"]["secretKeyRef"]["key"] == name
    secret = one(docs, "Secret")
    assert base64.b64decode(secret["data"]["AVAIL_KAFKA_SASL_PASSWORD"]).decode() == "kafka-pw-77"
