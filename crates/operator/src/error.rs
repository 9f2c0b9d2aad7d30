//! The error of a failed reconcile.

/// Why a reconcile failed. HubSpot problems are not errors: they end up in conditions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0} has no metadata.{1}")]
    MissingObjectKey(String, &'static str),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// The HubSpot side of a deleted object could not be cleaned up; the finalizer stays.
    #[error("cleanup failed: {0}")]
    Cleanup(String),
    /// The watch that keeps a cache of `{0}` objects has stopped.
    #[error("the {0} cache is not kept any more")]
    CacheUnavailable(&'static str),
}
