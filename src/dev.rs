//! Standalone mode: the whole system on one machine with no cluster. Manifests (CRs and
//! Secrets) are read from files, reconciled against HubSpot (the built-in emulator unless a
//! real API is given), and the receiver and worker run in-process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Secret;

use crate::api::{HubSpotIntegration, PropertyMapping, SecretKeyRef};

/// The resources of a set of manifest files.
#[derive(Debug, Default)]
pub struct Manifests {
    pub integrations: Vec<HubSpotIntegration>,
    pub mappings: Vec<PropertyMapping>,
    /// Secret data by (namespace, name).
    pub secrets: BTreeMap<(String, String), BTreeMap<String, String>>,
}

/// Namespace given to manifests that name none, as `kubectl apply` would.
pub const DEFAULT_NAMESPACE: &str = "default";

impl Manifests {
    /// Reads every `.yaml`/`.yml` file in `paths` (files, or directories read non-recursively).
    pub fn load(paths: &[PathBuf]) -> anyhow::Result<Self> {
        let mut manifests = Manifests::default();
        for path in paths {
            if path.is_dir() {
                let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                    .with_context(|| format!("reading {}", path.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                    .collect();
                files.sort();
                for file in files {
                    manifests.load_file(&file)?;
                }
            } else {
                manifests.load_file(path)?;
            }
        }
        Ok(manifests)
    }

    fn load_file(&mut self, path: &Path) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        for (index, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let value = <serde_yaml::Value as serde::Deserialize>::deserialize(document)
                .with_context(|| format!("{}: document {} is not YAML", path.display(), index + 1))?;
            if value.is_null() {
                continue;
            }
            let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or_default().to_string();
            let at = || format!("{}: document {} ({kind})", path.display(), index + 1);
            match kind.as_str() {
                "HubSpotIntegration" => {
                    self.integrations.push(with_namespace(serde_yaml::from_value(value).with_context(at)?))
                }
                "PropertyMapping" => {
                    self.mappings.push(with_namespace(serde_yaml::from_value(value).with_context(at)?))
                }
                "Secret" => {
                    let secret: Secret = with_namespace(serde_yaml::from_value(value).with_context(at)?);
                    let key = (
                        secret.metadata.namespace.clone().unwrap_or_default(),
                        secret.metadata.name.clone().unwrap_or_default(),
                    );
                    self.secrets.insert(key, secret_data(&secret).with_context(at)?);
                }
                "" => bail!("{}: missing `kind`", at()),
                other => bail!("{}: kind {other} is not used by hubspot-operator", at()),
            }
        }
        Ok(())
    }

    /// The value of a Secret key, as the controller would read it.
    pub fn secret_value(&self, namespace: &str, reference: &SecretKeyRef) -> anyhow::Result<String> {
        let data = self
            .secrets
            .get(&(namespace.to_string(), reference.name.clone()))
            .with_context(|| format!("Secret {namespace}/{} not found in the manifests", reference.name))?;
        data.get(&reference.key)
            .cloned()
            .with_context(|| format!("Secret {namespace}/{} has no key {}", reference.name, reference.key))
    }
}

trait Namespaced {
    fn namespace_mut(&mut self) -> &mut Option<String>;
}
impl<K: kube::Resource> Namespaced for K {
    fn namespace_mut(&mut self) -> &mut Option<String> {
        &mut self.meta_mut().namespace
    }
}

fn with_namespace<T: Namespaced>(mut resource: T) -> T {
    resource.namespace_mut().get_or_insert_with(|| DEFAULT_NAMESPACE.to_string());
    resource
}

fn secret_data(secret: &Secret) -> anyhow::Result<BTreeMap<String, String>> {
    let mut data = BTreeMap::new();
    for (key, value) in secret.data.iter().flatten() {
        data.insert(
            key.clone(),
            String::from_utf8(value.0.clone()).with_context(|| format!("key {key} is not UTF-8"))?,
        );
    }
    for (key, value) in secret.string_data.iter().flatten() {
        data.insert(key.clone(), value.clone());
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_load() {
        let m = Manifests::load(&[PathBuf::from("examples")]).unwrap();
        assert_eq!(m.integrations.len(), 1);
        assert_eq!(m.mappings.len(), 1);
        let integration = &m.integrations[0];
        assert_eq!(integration.metadata.namespace.as_deref(), Some(DEFAULT_NAMESPACE));
        let token = m.secret_value(DEFAULT_NAMESPACE, &integration.spec.credentials.private_app_token).unwrap();
        assert!(token.starts_with("pat-"));
    }

    #[test]
    fn unknown_kinds_and_bad_fields_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.yaml");
        std::fs::write(&file, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n").unwrap();
        let err = Manifests::load(std::slice::from_ref(&file)).unwrap_err().to_string();
        assert!(err.contains("ConfigMap") && err.contains("bad.yaml"), "{err}");
        std::fs::write(&file, "apiVersion: hubspot.io/v1alpha1\nkind: PropertyMapping\nmetadata: {name: x}\nspec: {objectType: contacts}\n").unwrap();
        let err = format!("{:#}", Manifests::load(&[file]).unwrap_err());
        assert!(err.contains("integrationRef"), "{err}");
    }
}
