"""The Helm chart lints clean with the real Helm engine and every rendered object is valid
Kubernetes for every supported version."""

import pathlib

import helm_python
import kubernetes_validate
import pytest
import yaml

CHART = pathlib.Path(__file__).resolve().parents[2] / "charts" / "hubspot-operator"
KUBERNETES_VERSIONS = ["1.33.0", "1.34.0", "1.35.0", "1.36.0", "1.37.0"]
VALUE_SETS = {
    "defaults": {},
    "one-namespace": {"watchNamespace": "crm", "receiverImage": "registry.example.com/hs:1", "logJson": False},
}


def rendered_objects(values):
    manifests = helm_python.Chart.load(str(CHART)).render(values, name="hs", namespace="hubspot-system")
    objects = []
    for path, text in manifests.items():
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append((path, doc))
    crd_text = (CHART / "crds" / "hubspot-operator.yaml").read_text()
    objects += [("crds", doc) for doc in yaml.safe_load_all(crd_text) if doc]
    return objects


def test_lint_is_clean():
    report = helm_python.lint(str(CHART), strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert problems == []


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rendered_objects_validate(values, version):
    objects = rendered_objects(values)
    kinds = {doc["kind"] for _, doc in objects}
    assert {"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"} <= kinds
    for path, doc in objects:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{path} {doc['kind']}/{doc['metadata']['name']} invalid for {version}: {e.message}")


def test_rbac_has_no_wildcards():
    for _, doc in rendered_objects({}):
        for rule in doc.get("rules", []):
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(field, []), rule


def test_namespace_flag_follows_values():
    deployment = next(d for _, d in rendered_objects(VALUE_SETS["one-namespace"]) if d["kind"] == "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=crm" in args
    assert "--receiver-image=registry.example.com/hs:1" in args
