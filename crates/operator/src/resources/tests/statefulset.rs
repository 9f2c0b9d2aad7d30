//! The receiver StatefulSet and its PodDisruptionBudget.

use super::*;

#[test]
fn statefulset_runs_the_receiver_restricted_with_the_config_mounted() {
    let i = integration();
    let sts = receiver_statefulset(&i, &owner(&i), "ghcr.io/hubspot-operator/hubspot-operator:0.1.0", "abc", &[]);
    assert_eq!(sts.metadata.name.as_deref(), Some("crm-receiver"));
    assert_eq!(sts.metadata.namespace.as_deref(), Some("sales"));
    let spec = sts.spec.unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.service_name.as_deref(), Some("crm-receiver"));
    assert_eq!(spec.update_strategy.unwrap().type_.as_deref(), Some("RollingUpdate"));
    let template_labels = spec.template.metadata.as_ref().unwrap().labels.clone().unwrap();
    for (k, v) in spec.selector.match_labels.as_ref().unwrap() {
        assert_eq!(template_labels.get(k), Some(v), "selector label {k} must be on the pods");
    }
    assert_eq!(template_labels["app.kubernetes.io/component"], "receiver");
    assert_eq!(template_labels["app.kubernetes.io/managed-by"], "hubspot-operator");
    assert_eq!(template_labels["app.kubernetes.io/instance"], "crm");
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.termination_grace_period_seconds, Some(30));
    let pod_sc = pod.security_context.unwrap();
    assert_eq!(pod_sc.run_as_non_root, Some(true));
    assert_eq!((pod_sc.run_as_user, pod_sc.run_as_group), (Some(65532), Some(65532)));
    assert_eq!(pod_sc.fs_group, Some(65532), "the non-root user must be able to write the volume");
    assert_eq!(pod_sc.fs_group_change_policy.as_deref(), Some("OnRootMismatch"));
    assert_eq!(pod_sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("ghcr.io/hubspot-operator/hubspot-operator:0.1.0"));
    assert_eq!(c.args.as_deref().unwrap(), ["receiver", "--config", "/etc/hubspot-operator/config.yaml"]);
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.as_ref().unwrap().drop.as_deref().unwrap(), ["ALL"]);
    assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    let ports: Vec<_> =
        c.ports.as_ref().unwrap().iter().map(|p| (p.name.as_deref().unwrap(), p.container_port)).collect();
    assert_eq!(ports, [("http", 8080), ("metrics", 8081)]);
    let probe_port = |p: &Option<Probe>| p.as_ref().unwrap().http_get.as_ref().unwrap().port.clone();
    assert_eq!(probe_port(&c.liveness_probe), IntOrString::String("http".into()), "what the kubelet probes");
    assert_eq!(probe_port(&c.readiness_probe), IntOrString::String("http".into()));
    let probe_path = |p: &Option<Probe>| p.as_ref().unwrap().http_get.as_ref().unwrap().path.clone().unwrap();
    assert_eq!(probe_path(&c.liveness_probe), "/healthz");
    assert_eq!(probe_path(&c.readiness_probe), "/readyz");
    let mounts = c.volume_mounts.as_ref().unwrap();
    let config_mount = mounts.iter().find(|m| m.mount_path == CONFIG_DIR).unwrap();
    assert_eq!(config_mount.read_only, Some(true));
    let volumes = pod.volumes.unwrap();
    let config_volume = volumes.iter().find(|v| v.name == config_mount.name).unwrap();
    assert_eq!(config_volume.secret.as_ref().unwrap().secret_name.as_deref(), Some("crm-receiver-config"));
    // The data directory is the claim template's volume, not a pod volume such as emptyDir.
    let data_mount = mounts.iter().find(|m| m.mount_path == DATA_DIR).unwrap();
    assert_eq!(data_mount.read_only, None);
    assert!(volumes.iter().all(|v| v.name != data_mount.name), "{volumes:?}");
    let claims = spec.volume_claim_templates.unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].metadata.name.as_deref(), Some(data_mount.name.as_str()));
}

#[test]
fn data_volume_claim_follows_the_storage_settings() {
    let claim = |i: &HubSpotIntegration| {
        let sts = receiver_statefulset(i, &owner(i), "img", "h", &[]);
        let spec = sts.spec.unwrap();
        let retention = spec.persistent_volume_claim_retention_policy.unwrap();
        assert_eq!(
            (retention.when_deleted.as_deref(), retention.when_scaled.as_deref()),
            (Some("Retain"), Some("Retain"))
        );
        spec.volume_claim_templates.unwrap().remove(0)
    };
    let i = integration();
    let default = claim(&i);
    assert_eq!(default.metadata.name.as_deref(), Some("data"));
    let spec = default.spec.unwrap();
    assert_eq!(spec.access_modes.as_deref().unwrap(), ["ReadWriteOnce"]);
    assert_eq!(spec.resources.unwrap().requests.unwrap()["storage"], Quantity("1Gi".into()));
    assert_eq!(spec.storage_class_name, None, "the cluster's default class");

    let mut sized = integration();
    sized.spec.receiver.storage.size = "20Gi".into();
    sized.spec.receiver.storage.storage_class_name = Some("fast-ssd".into());
    let spec = claim(&sized).spec.unwrap();
    assert_eq!(spec.resources.unwrap().requests.unwrap()["storage"], Quantity("20Gi".into()));
    assert_eq!(spec.storage_class_name.as_deref(), Some("fast-ssd"));
}

#[test]
fn storage_settings_default_when_the_manifest_omits_them() {
    let spec: HubSpotIntegrationSpec =
        serde_yaml::from_str("credentials: {privateAppToken: {name: hubspot, key: token}}\nreceiver: {replicas: 1}\n")
            .unwrap();
    assert_eq!(spec.receiver.storage.size, "1Gi");
    assert_eq!(spec.receiver.storage.storage_class_name, None);
    let spec: HubSpotIntegrationSpec = serde_yaml::from_str(
        "credentials: {privateAppToken: {name: hubspot, key: token}}\nreceiver: {storage: {storageClassName: gp3}}\n",
    )
    .unwrap();
    assert_eq!(spec.receiver.storage.size, "1Gi");
    assert_eq!(spec.receiver.storage.storage_class_name.as_deref(), Some("gp3"));
}

#[test]
fn image_and_replicas_come_from_the_spec_when_set() {
    let mut i = integration();
    i.spec.receiver.image = Some("registry.example.com/receiver:pinned".into());
    i.spec.receiver.replicas = 0;
    let sts = receiver_statefulset(&i, &owner(&i), "default:image", "abc", &[]);
    let spec = sts.spec.unwrap();
    assert_eq!(spec.replicas, Some(0));
    assert_eq!(
        spec.template.spec.unwrap().containers[0].image.as_deref(),
        Some("registry.example.com/receiver:pinned")
    );
}

#[test]
fn receiver_pods_get_the_operators_trace_settings_and_name_their_integration() {
    let i = integration();
    let env = |trace_env: &[(String, String)]| {
        let sts = receiver_statefulset(&i, &owner(&i), "img", "h", trace_env);
        sts.spec.unwrap().template.spec.unwrap().containers[0].env.clone()
    };
    assert_eq!(env(&[]), None, "without trace export the pods are as before");
    let trace_env = [("OTEL_EXPORTER_OTLP_ENDPOINT".to_string(), "http://collector:4318".to_string())];
    let rendered: Vec<(String, Option<String>)> =
        env(&trace_env).unwrap().into_iter().map(|var| (var.name, var.value)).collect();
    assert_eq!(
        rendered,
        [
            ("OTEL_EXPORTER_OTLP_ENDPOINT".to_string(), Some("http://collector:4318".to_string())),
            (
                "OTEL_RESOURCE_ATTRIBUTES".to_string(),
                Some(format!("k8s.namespace.name={},hubspot.integration=crm", i.namespace().unwrap()))
            ),
        ]
    );
}

#[test]
fn config_hash_annotation_follows_the_rendered_config() {
    let i = integration();
    let config = receiver_config(&i, &[], &secrets()).unwrap();
    let mut rotated = config.clone();
    rotated.hubspot.access_token = "pat-na1-rotated".into();
    let annotation = |cfg: &ReceiverConfig| {
        let sts = receiver_statefulset(&i, &owner(&i), "img", &config_hash(&config_yaml(cfg)), &[]);
        sts.spec.unwrap().template.metadata.unwrap().annotations.unwrap()[CONFIG_HASH_ANNOTATION].clone()
    };
    assert_eq!(annotation(&config), annotation(&config.clone()), "same config, same hash");
    assert_ne!(annotation(&config), annotation(&rotated), "a changed config rolls the pods");
    assert_eq!(annotation(&config).len(), 64);
}

#[test]
fn disruption_budget_lets_one_receiver_pod_go_at_a_time() {
    let i = integration();
    let pdb = receiver_pod_disruption_budget(&i, &owner(&i));
    assert_eq!(pdb.metadata.name.as_deref(), Some("crm-receiver"));
    let spec = pdb.spec.unwrap();
    assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
    assert_eq!(spec.min_available, None, "minAvailable 1 would block every drain of a single replica");
    assert_eq!(spec.unhealthy_pod_eviction_policy.as_deref(), Some("AlwaysAllow"));
    let sts = receiver_statefulset(&i, &owner(&i), "img", "h", &[]).spec.unwrap();
    assert_eq!(spec.selector.unwrap().match_labels, sts.selector.match_labels, "selects the receiver pods");
}

/// The receiver StatefulSet of `crm` as JSON, with the container's `ports`.
fn expected_statefulset(ports: serde_json::Value) -> serde_json::Value {
    let selector =
        serde_json::json!({ "app.kubernetes.io/instance": "crm", "app.kubernetes.io/name": "hubspot-operator" });
    let metadata = receiver_object_metadata(None);
    let restricted = serde_json::json!({ "type": "RuntimeDefault" });
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata,
        "spec": {
            "replicas": 1,
            "serviceName": "crm-receiver",
            "podManagementPolicy": "Parallel",
            "updateStrategy": { "type": "RollingUpdate" },
            "selector": { "matchLabels": selector },
            "template": {
                "metadata": { "labels": metadata["labels"], "annotations": { "hubspot.io/config-hash": "h" } },
                "spec": {
                    "containers": [{
                        "name": "receiver",
                        "image": "img",
                        "args": ["receiver", "--config", "/etc/hubspot-operator/config.yaml"],
                        "ports": ports,
                        "livenessProbe": { "httpGet": { "path": "/healthz", "port": "http" }, "periodSeconds": 10 },
                        "readinessProbe": { "httpGet": { "path": "/readyz", "port": "http" }, "periodSeconds": 10 },
                        "volumeMounts": [
                            { "name": "config", "mountPath": "/etc/hubspot-operator", "readOnly": true },
                            { "name": "data", "mountPath": "/var/lib/hubspot-operator" },
                        ],
                        "securityContext": {
                            "runAsNonRoot": true,
                            "readOnlyRootFilesystem": true,
                            "allowPrivilegeEscalation": false,
                            "capabilities": { "drop": ["ALL"] },
                            "seccompProfile": restricted,
                        },
                    }],
                    "automountServiceAccountToken": false,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": 65532,
                        "runAsGroup": 65532,
                        "fsGroup": 65532,
                        "fsGroupChangePolicy": "OnRootMismatch",
                        "seccompProfile": restricted,
                    },
                    "volumes": [{ "name": "config", "secret": { "secretName": "crm-receiver-config", "defaultMode": 0o440 } }],
                },
            },
            "volumeClaimTemplates": [{
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": { "name": "data", "labels": selector },
                "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } },
            }],
            "persistentVolumeClaimRetentionPolicy": { "whenDeleted": "Retain", "whenScaled": "Retain" },
        },
    })
}

#[test]
fn statefulset_names_an_admin_container_port_only_when_the_admin_api_is_exposed() {
    let http = serde_json::json!({ "name": "http", "containerPort": 8080, "protocol": "TCP" });
    let metrics = serde_json::json!({ "name": "metrics", "containerPort": 8081, "protocol": "TCP" });
    let admin = serde_json::json!({ "name": "admin", "containerPort": 8082, "protocol": "TCP" });
    let statefulset =
        |i: &HubSpotIntegration| serde_json::to_value(receiver_statefulset(i, &owner(i), "img", "h", &[])).unwrap();
    assert_eq!(statefulset(&integration()), expected_statefulset(serde_json::json!([http, metrics])));
    assert_eq!(statefulset(&with_admin(false, vec![])), expected_statefulset(serde_json::json!([http, metrics])));
    assert_eq!(statefulset(&with_admin(true, vec![])), expected_statefulset(serde_json::json!([http, metrics, admin])));
}
