//! Which NATS servers the JetStream event log runs on.

/// The oldest NATS server the log runs on (work-queue streams, message ids, and reading the
/// next message of a subject from a sequence on).
pub const MIN_SERVER_VERSION: (u64, u64, u64) = (2, 9, 0);
/// Servers older than this can keep, after a crash and restart, messages the consumer already
/// acknowledged; the log does not count them as pending, but the stream's limits do.
const SERVER_VERSION_WITHOUT_LEFTOVERS: (u64, u64, u64) = (2, 10, 0);

/// Refuses a server older than [`MIN_SERVER_VERSION`]; warns about one that can keep
/// acknowledged messages after a restart.
pub(super) fn check_server_version(version: &str) -> anyhow::Result<()> {
    let parsed = parse_version(version);
    let shown = |(major, minor, patch): (u64, u64, u64)| format!("{major}.{minor}.{patch}");
    match parsed {
        Some(v) if v < MIN_SERVER_VERSION => anyhow::bail!(
            "NATS server {version} is too old for the JetStream event log: it needs {} or later",
            shown(MIN_SERVER_VERSION)
        ),
        Some(v) if v < SERVER_VERSION_WITHOUT_LEFTOVERS => tracing::warn!(
            server_version = version,
            recommended = %shown(SERVER_VERSION_WITHOUT_LEFTOVERS),
            "this NATS server can keep already released events after a crash; they count against \
             the stream's maxPendingEvents and maxPendingBytes"
        ),
        Some(_) => {}
        None => tracing::warn!(server_version = version, "cannot tell the NATS server's version"),
    }
    Ok(())
}

/// `major.minor.patch` of a server version such as `2.10.22` or `2.11.0-beta.1`.
fn parse_version(version: &str) -> Option<(u64, u64, u64)> {
    let core = version.trim_start_matches('v').split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next().flatten().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_older_than_the_minimum_are_refused() {
        assert_eq!(parse_version("2.10.22"), Some((2, 10, 22)));
        assert_eq!(parse_version("v2.11.0-beta.1"), Some((2, 11, 0)));
        assert_eq!(parse_version("nonsense"), None);
        let refused = check_server_version("2.8.4").unwrap_err().to_string();
        assert!(refused.contains("2.8.4") && refused.contains("2.9.0"), "{refused}");
        for accepted in ["2.9.10", "2.10.0", "2.15.1", "unknown"] {
            assert!(check_server_version(accepted).is_ok(), "{accepted}");
        }
    }
}
