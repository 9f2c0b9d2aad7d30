"""The Helm chart lints clean with the real Helm engine, every rendered object is valid Kubernetes
for every supported version, values.schema.json rejects bad values, and the rendered objects
keep the promises the chart's README makes (CRDs that upgrade, least privilege, restricted pods)."""

import pathlib

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "hubspot-operator"
KUBERNETES_VERSIONS = ["1.33.0", "1.34.0", "1.35.0", "1.36.0", "1.37.0"]
NAMESPACE = "hubspot-system"

# Every option switched on or away from its default.
EVERYTHING = {
    "image": {"repository": "registry.example.com/hubspot-operator", "tag": "1.2.3", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
    "receiverImage": "registry.example.com/hs:1",
    "watchNamespace": "crm",
    "logJson": False,
    "replicas": 3,
    "maxConcurrentReconciles": 4,
    "leaderElection": {"enabled": True, "leaseName": "crm-operator", "leaseDuration": 30, "renewDeadline": 20, "retryPeriod": 4},
    "crds": {"install": True, "keep": False},
    "resources": {"requests": {"cpu": "100m", "memory": "96Mi"}, "limits": {"cpu": 1, "memory": "256Mi"}},
    "serviceAccount": {"name": "hubspot", "annotations": {"example.com/role": "operator"}},
    "podAnnotations": {"example.com/team": "platform"},
    "podLabels": {"team": "platform"},
    "priorityClassName": "system-cluster-critical",
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}
                ]
            }
        }
    },
    "metrics": {
        "serviceMonitor": {"enabled": True, "interval": "30s", "scrapeTimeout": "10s", "labels": {"release": "prom"}}
    },
    "networkPolicy": {
        "enabled": True,
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "egressPorts": [443, 6443],
        "extraEgress": [
            {
                "to": [{"podSelector": {"matchLabels": {"app": "hubspot-emulator"}}}],
                "ports": [{"port": 8090, "protocol": "TCP"}],
            }
        ],
    },
    "tracing": {
        "otlpEndpoint": "http://otel-collector.observability:4318",
        "env": [
            {"name": "OTEL_TRACES_SAMPLER", "value": "parentbased_traceidratio"},
            {"name": "OTEL_TRACES_SAMPLER_ARG", "value": "0.1"},
            {"name": "OTEL_EXPORTER_OTLP_HEADERS", "valueFrom": {"secretKeyRef": {"name": "otlp", "key": "headers"}}},
        ],
    },
}
VALUE_SETS = {
    "defaults": {},
    "everything": EVERYTHING,
    "no-crds": {"crds": {"install": False}},
    "no-leader-election": {"leaderElection": {"enabled": False}},
}

# The fields of monitoring.coreos.com/v1 ServiceMonitor the chart renders, with the constraints of
# prometheus-operator's CRD. kubernetes-validate knows only built-in kinds, so this kind is
# checked against this schema instead.
PROMETHEUS_DURATION = "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            "properties": {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["port"],
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": PROMETHEUS_DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": PROMETHEUS_DURATION},
                        },
                    },
                },
            },
        },
    },
}


def rendered_objects(values):
    manifests = helm_python.Chart.load(str(CHART)).render(values, name="hs", namespace=NAMESPACE)
    objects = []
    for path, text in manifests.items():
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append((path, doc))
    return objects


def only(objects, kind):
    matching = [doc for _, doc in objects if doc["kind"] == kind]
    assert len(matching) == 1, f"expected one {kind}, got {len(matching)}"
    return matching[0]


def controller_pod(objects):
    return only(objects, "Deployment")["spec"]["template"]


def test_lint_is_clean():
    for values in VALUE_SETS.values():
        report = helm_python.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert problems == [], values


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rendered_objects_validate(values, version):
    objects = rendered_objects(values)
    for path, doc in objects:
        if doc["kind"] == "ServiceMonitor":
            jsonschema.validate(doc, SERVICE_MONITOR_SCHEMA)
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{path} {doc['kind']}/{doc['metadata']['name']} invalid for {version}: {e.message}")


def test_defaults_render_the_controller_and_its_crds_but_no_optional_objects():
    kinds = sorted(doc["kind"] for _, doc in rendered_objects({}))
    generated_crds = [doc for doc in yaml.safe_load_all((REPO / "crds" / "hubspot-operator.yaml").read_text()) if doc]
    assert len(generated_crds) == 4
    assert kinds == sorted(
        ["ClusterRole", "ClusterRoleBinding", "Deployment", "Role", "RoleBinding", "Service", "ServiceAccount"]
        + ["CustomResourceDefinition"] * len(generated_crds)
    )


def test_crds_are_templates_equal_to_the_generated_ones_and_kept_on_uninstall():
    generated = [doc for doc in yaml.safe_load_all((REPO / "crds" / "hubspot-operator.yaml").read_text()) if doc]
    rendered = [doc for _, doc in rendered_objects({}) if doc["kind"] == "CustomResourceDefinition"]
    assert [crd["metadata"]["name"] for crd in rendered] == [crd["metadata"]["name"] for crd in generated]
    for crd, expected in zip(rendered, generated):
        metadata = crd["metadata"]
        assert metadata["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert metadata["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert {k: v for k, v in crd.items() if k != "metadata"} == {k: v for k, v in expected.items() if k != "metadata"}

    not_kept = [doc for _, doc in rendered_objects({"crds": {"keep": False}}) if doc["kind"] == "CustomResourceDefinition"]
    assert len(not_kept) == len(generated)
    assert all("annotations" not in crd["metadata"] for crd in not_kept)
    assert not [doc for _, doc in rendered_objects({"crds": {"install": False}}) if doc["kind"] == "CustomResourceDefinition"]


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicas": 2, "leaderElection": {"enabled": False}}, "at '/leaderElection/enabled'"),
        ({"replicas": -1}, "at '/replicas'"),
        ({"maxConcurrentReconciles": 0}, "at '/maxConcurrentReconciles'"),
        ({"leaderElection": {"retryPeriod": 0}}, "at '/leaderElection/retryPeriod'"),
        ({"leaderElection": {"leaseName": "Not A Name"}}, "at '/leaderElection/leaseName'"),
        ({"replica": 1}, "additional properties 'replica' not allowed"),
        ({"image": {"repository": "x", "pullPolicy": "Sometimes"}}, "at '/image/pullPolicy'"),
        ({"image": {"repository": ""}}, "at '/image/repository'"),
        ({"logJson": "yes"}, "at '/logJson'"),
        ({"watchNamespace": "Not_A_Namespace"}, "at '/watchNamespace'"),
        ({"crds": {"install": True, "upgrade": True}}, "at '/crds'"),
        ({"imagePullSecrets": ["regcred"]}, "at '/imagePullSecrets/0'"),
        ({"metrics": {"serviceMonitor": {"enabled": True, "interval": "30 seconds"}}}, "at '/metrics/serviceMonitor/interval'"),
        ({"networkPolicy": {"egressPorts": [0]}}, "at '/networkPolicy/egressPorts/0'"),
        ({"leaderElection": {"enabled": True, "lease": "x"}}, "additional properties 'lease' not allowed"),
        ({"tracing": {"otlpEndpoint": "otel-collector:4318"}}, "at '/tracing/otlpEndpoint'"),
        ({"tracing": {"env": [{"value": "x"}]}}, "at '/tracing/env/0'"),
    ],
)
def test_values_breaking_the_schema_are_rejected_by_the_engine(values, complaint):
    with pytest.raises(helm_python.HelmValuesError) as rejected:
        rendered_objects(values)
    message = str(rejected.value)
    assert "values don't meet the specifications of the schema" in message
    assert complaint in message


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_rbac_has_no_wildcards(values):
    roles = [doc for _, doc in rendered_objects(values) if doc["kind"] in ("ClusterRole", "Role")]
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(field, []), rule
            assert "nonResourceURLs" not in rule, rule


def test_the_controller_may_apply_and_delete_the_receivers_ingress_and_http_route_but_only_watch_ingresses():
    rules = only(rendered_objects({}), "ClusterRole")["rules"]
    assert {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]} in rules
    # The Gateway API is optional, so HTTPRoutes are not watched: no list or watch.
    assert {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["httproutes"], "verbs": ["get", "create", "patch", "delete"]} in rules
    granted = [(group, resource) for rule in rules for group in rule["apiGroups"] for resource in rule["resources"]]
    assert granted.count(("networking.k8s.io", "ingresses")) == 1
    assert granted.count(("gateway.networking.k8s.io", "httproutes")) == 1


def test_the_controller_may_only_list_endpoint_slices_to_find_the_receiver_pods():
    rules = only(rendered_objects({}), "ClusterRole")["rules"]
    slices = [rule for rule in rules if "endpointslices" in rule["resources"]]
    assert slices == [{"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list"]}]


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_controller_pod_meets_the_restricted_pod_security_standard(values):
    pod = controller_pod(rendered_objects(values))["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    assert all("hostPath" not in volume for volume in pod.get("volumes", []))
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert not context.get("privileged")


def test_options_reach_the_controller_pod():
    pod = controller_pod(rendered_objects(EVERYTHING))
    spec = pod["spec"]
    container = spec["containers"][0]
    assert container["image"] == "registry.example.com/hubspot-operator:1.2.3"
    assert container["imagePullPolicy"] == "Always"
    assert "--namespace=crm" in container["args"]
    assert "--receiver-image=registry.example.com/hs:1" in container["args"]
    assert "--max-concurrent-reconciles=4" in container["args"]
    assert {"name": "LOG_JSON", "value": "false"} in container["env"]
    assert container["resources"] == EVERYTHING["resources"]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert spec["serviceAccountName"] == "hubspot"
    assert spec["nodeSelector"] == EVERYTHING["nodeSelector"]
    assert spec["tolerations"] == EVERYTHING["tolerations"]
    assert spec["affinity"] == EVERYTHING["affinity"]
    assert pod["metadata"]["labels"]["team"] == "platform"
    assert pod["metadata"]["annotations"] == {"example.com/team": "platform"}


def test_tracing_sets_the_opentelemetry_environment_of_the_controller():
    env = controller_pod(rendered_objects(EVERYTHING))["spec"]["containers"][0]["env"]
    otel = [var for var in env if var["name"].startswith("OTEL_")]
    assert otel == [
        {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://otel-collector.observability:4318"},
        *EVERYTHING["tracing"]["env"],
    ]
    by_default = controller_pod(rendered_objects({}))["spec"]["containers"][0]["env"]
    assert [var for var in by_default if var["name"].startswith("OTEL_")] == [], "no export unless asked for"


def test_defaults_use_the_chart_app_version_and_watch_every_namespace():
    container = controller_pod(rendered_objects({}))["spec"]["containers"][0]
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert container["image"] == f"ghcr.io/hubspot-operator/hubspot-operator:{app_version}"
    assert not [arg for arg in container["args"] if arg.startswith("--namespace")]
    assert "--max-concurrent-reconciles=10" in container["args"]


def test_leader_election_passes_its_settings_and_may_touch_only_its_own_lease():
    objects = rendered_objects(EVERYTHING)
    assert only(objects, "Deployment")["spec"]["replicas"] == 3
    container = controller_pod(objects)["spec"]["containers"][0]
    leader_args = [arg for arg in container["args"] if arg.startswith("--leader-elect")]
    assert leader_args == [
        "--leader-elect",
        "--leader-elect-lease-name=crm-operator",
        f"--leader-elect-namespace={NAMESPACE}",
        "--leader-elect-lease-duration=30",
        "--leader-elect-renew-deadline=20",
        "--leader-elect-retry-period=4",
    ]
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in container["env"]
    role = only(objects, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["crm-operator"],
            "verbs": ["get", "update"],
        },
    ]
    binding = only(objects, "RoleBinding")
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "hubspot", "namespace": NAMESPACE}]


def test_leader_election_is_on_by_default_and_can_be_turned_off_for_one_replica():
    defaults = rendered_objects({})
    args = controller_pod(defaults)["spec"]["containers"][0]["args"]
    assert "--leader-elect" in args
    assert "--leader-elect-lease-name=hs-hubspot-operator" in args
    assert only(defaults, "Role")["rules"][1]["resourceNames"] == ["hs-hubspot-operator"]
    off = rendered_objects({"leaderElection": {"enabled": False}})
    assert not [arg for arg in controller_pod(off)["spec"]["containers"][0]["args"] if "leader" in arg]
    assert not [doc for _, doc in off if doc["kind"] in ("Role", "RoleBinding")]


def test_metrics_service_and_service_monitor_reach_the_controller_metrics_port():
    objects = rendered_objects(EVERYTHING)
    pod = controller_pod(objects)
    service = only(objects, "Service")
    monitor = only(objects, "ServiceMonitor")
    container_ports = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
    assert container_ports["metrics"] == 8081
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8081, "targetPort": "metrics", "protocol": "TCP"}]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}]
    assert monitor["metadata"]["labels"]["release"] == "prom"


# Labels the controller gives every receiver pod (`receiver_labels` in crates/operator/src/resources.rs).
RECEIVER_POD_LABELS = {"app.kubernetes.io/managed-by": "hubspot-operator", "app.kubernetes.io/component": "receiver"}


def test_network_policy_selects_the_controller_and_allows_only_what_it_needs():
    objects = rendered_objects(EVERYTHING)
    pod = controller_pod(objects)
    policy = only(objects, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == [
        {"ports": [{"port": "metrics", "protocol": "TCP"}], "from": EVERYTHING["networkPolicy"]["metricsFrom"]}
    ]
    assert policy["egress"] == [
        {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
        {
            "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": RECEIVER_POD_LABELS}}],
            # The receivers' status port, and the port receivers of an earlier version report on.
            "ports": [{"port": 8081, "protocol": "TCP"}, {"port": 8080, "protocol": "TCP"}],
        },
        {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]},
        *EVERYTHING["networkPolicy"]["extraEgress"],
    ]
    without_peers = only(rendered_objects({"networkPolicy": {"enabled": True}}), "NetworkPolicy")["spec"]
    assert without_peers["ingress"] == [{"ports": [{"port": "metrics", "protocol": "TCP"}]}]
