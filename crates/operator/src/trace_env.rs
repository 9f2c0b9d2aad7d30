//! Which of the operator's trace settings its receiver pods inherit.

/// The trace settings of the operator's own environment that the receiver pods it creates get
/// as well, so that one collector setting covers both. Not `OTEL_SERVICE_NAME` and
/// `OTEL_RESOURCE_ATTRIBUTES`, which describe the operator's pod, nor
/// `OTEL_EXPORTER_OTLP_HEADERS`, which may hold a credential that would land in plain text in
/// every integration's StatefulSet.
const RECEIVER_INHERITED_VARS: &[&str] = &[
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
];

/// Of `vars` (the operator's environment), the trace settings its receiver pods get too (see
/// `RECEIVER_INHERITED_VARS`), in a stable order; empty when none is set.
pub fn receiver_trace_env(vars: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut inherited: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(name, value)| RECEIVER_INHERITED_VARS.contains(&name.as_str()) && !value.is_empty())
        .collect();
    inherited.sort();
    inherited
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivers_inherit_the_export_settings_only() {
        let vars = [
            ("OTEL_SERVICE_NAME", "my-operator"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer secret"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_RESOURCE_ATTRIBUTES", "k8s.pod.name=operator-0"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", ""),
            ("PATH", "/usr/bin"),
        ]
        .map(|(name, value)| (name.to_string(), value.to_string()));
        let inherited = receiver_trace_env(vars);
        let names: Vec<&str> = inherited.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"]);
        assert!(receiver_trace_env([("PATH".to_string(), "/usr/bin".to_string())]).is_empty());
    }
}
