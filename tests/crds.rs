//! `crds/` and the chart's CRDs are exactly what `hubspot-operator crd` prints.

#[test]
fn checked_in_crds_match_the_types() {
    let generated = hubspot_operator::api::crds_yaml();
    for path in ["crds/hubspot-operator.yaml", "charts/hubspot-operator/crds/hubspot-operator.yaml"] {
        let on_disk = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        assert!(on_disk == generated, "{path} is stale: run `make crds`");
    }
}
