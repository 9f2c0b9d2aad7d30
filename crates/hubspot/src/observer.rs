//! What the client tells of its calls to whoever keeps metrics; this crate keeps none itself.

/// Told of every call the client makes (see [`crate::HubSpotClient::with_observer`]).
pub trait CallObserver: Send + Sync {
    /// A call ended: `operation` names the API call (`batch_read`, `upsert`, ...) and `outcome`
    /// how it ended (`ok`, `rate_limited`, `transport_error`, ...).
    fn call_ended(&self, operation: &str, outcome: &str);
    /// One HTTP request, of the one or more a call makes, took `seconds`.
    fn request_took(&self, seconds: f64);
    /// A batch read asked for `objects` objects in one request.
    fn batch_read(&self, objects: usize);
}
