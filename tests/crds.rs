//! `crds/` and the chart's CRDs are exactly what `hubspot-operator crd` prints. The chart keeps
//! its copy in `files/` and installs it through `templates/crds.yaml`, so upgrades update it.

#[test]
fn checked_in_crds_match_the_types() {
    let generated = model::api::crds_yaml();
    for path in ["crds/hubspot-operator.yaml", "charts/hubspot-operator/files/crds.yaml"] {
        let on_disk = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        assert!(on_disk == generated, "{path} is stale: run `make crds`");
    }
}
