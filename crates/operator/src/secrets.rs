//! Secret values referenced by the custom resources. The controller fills a [`SecretStore`] from
//! the API server; `dev` mode fills one from Secret manifests. Everything after that is pure.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use model::api::SecretKeyRef;
use model::api::integration::CredentialsError;

/// Why a referenced Secret value cannot be used. `reason()` is the condition reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("Secret {name:?} not found")]
    NotFound { name: String },
    #[error("Secret {name:?} has no key {key:?}")]
    KeyMissing { name: String, key: String },
    #[error("key {key:?} of Secret {name:?} is not UTF-8 text")]
    NotText { name: String, key: String },
    /// No Secret is named because the credentials name none or two kinds.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
}

impl SecretError {
    /// The condition reason for this problem.
    pub fn reason(&self) -> &'static str {
        match self {
            SecretError::NotFound { .. } => "SecretNotFound",
            SecretError::KeyMissing { .. } => "SecretKeyMissing",
            SecretError::NotText { .. } => "SecretKeyInvalid",
            SecretError::Credentials(_) => "InvalidCredentials",
        }
    }
}

/// The Secrets of one namespace that a reconcile needs, by name. A name without an entry is a
/// Secret that does not exist.
#[derive(Clone, Debug, Default)]
pub struct SecretStore {
    secrets: BTreeMap<String, Secret>,
}

impl SecretStore {
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Self {
        Self { secrets: secrets.into_iter().map(|s| (s.name_any(), s)).collect() }
    }

    pub fn insert(&mut self, secret: Secret) {
        self.secrets.insert(secret.name_any(), secret);
    }

    /// Adds Secret `name` with already-decoded values (as `dev` mode keeps manifest Secrets).
    pub fn insert_values(&mut self, name: &str, values: BTreeMap<String, String>) {
        let mut secret = Secret::default();
        secret.metadata.name = Some(name.to_string());
        secret.string_data = Some(values);
        self.insert(secret);
    }

    /// Secret `name`, if it exists.
    pub fn get(&self, name: &str) -> Option<&Secret> {
        self.secrets.get(name)
    }

    /// The value of `reference`, without surrounding whitespace: Secrets created from files
    /// usually end in a newline that is no part of a token.
    ///
    /// `stringData` is read too, because Secret manifests (as `dev` mode loads them) often use it;
    /// the API server itself only ever returns `data`.
    pub fn value(&self, reference: &SecretKeyRef) -> Result<String, SecretError> {
        let secret =
            self.secrets.get(&reference.name).ok_or_else(|| SecretError::NotFound { name: reference.name.clone() })?;
        let key_missing = || SecretError::KeyMissing { name: reference.name.clone(), key: reference.key.clone() };
        if let Some(bytes) = secret.data.as_ref().and_then(|d| d.get(&reference.key)) {
            let text = std::str::from_utf8(&bytes.0)
                .map_err(|_| SecretError::NotText { name: reference.name.clone(), key: reference.key.clone() })?;
            return Ok(text.trim().to_string());
        }
        secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(&reference.key))
            .map(|text| text.trim().to_string())
            .ok_or_else(key_missing)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;

    use super::*;

    fn key(name: &str, key: &str) -> SecretKeyRef {
        SecretKeyRef { name: name.into(), key: key.into() }
    }

    fn secret(name: &str, data: &[(&str, &[u8])], string_data: &[(&str, &str)]) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some(name.into());
        if !data.is_empty() {
            s.data = Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.to_vec()))).collect());
        }
        if !string_data.is_empty() {
            s.string_data = Some(string_data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        }
        s
    }

    #[test]
    fn reads_data_and_string_data_and_trims_newlines() {
        let mut store = SecretStore::new([
            secret("a", &[("token", b"pat-na1-abc\n")], &[]),
            secret("b", &[], &[("token", " pat-eu1-def ")]),
        ]);
        store.insert_values("c", BTreeMap::from([("token".to_string(), "pat-na1-ghi".to_string())]));
        assert_eq!(store.value(&key("a", "token")).unwrap(), "pat-na1-abc");
        assert_eq!(store.value(&key("b", "token")).unwrap(), "pat-eu1-def");
        assert_eq!(store.value(&key("c", "token")).unwrap(), "pat-na1-ghi");
    }

    #[test]
    fn missing_secret_and_missing_key_have_their_own_reasons() {
        let store = SecretStore::new([secret("a", &[("token", b"x")], &[])]);
        let missing = store.value(&key("nope", "token")).unwrap_err();
        assert_eq!(missing.reason(), "SecretNotFound");
        assert_eq!(missing.to_string(), r#"Secret "nope" not found"#);
        let no_key = store.value(&key("a", "other")).unwrap_err();
        assert_eq!(no_key.reason(), "SecretKeyMissing");
        assert_eq!(no_key.to_string(), r#"Secret "a" has no key "other""#);
    }

    #[test]
    fn binary_values_are_refused() {
        let store = SecretStore::new([secret("a", &[("token", &[0xff, 0xfe])], &[])]);
        assert_eq!(store.value(&key("a", "token")).unwrap_err().reason(), "SecretKeyInvalid");
    }
}
