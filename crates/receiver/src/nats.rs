//! NATS settings shared by the JetStream event log and the NATS destination: server lists and
//! publish subjects.

/// The servers of a NATS URL setting: one URL, or several separated by commas (seeds of a
/// cluster; the client tries each and learns the rest from the one that answers).
pub fn servers(url: &str) -> Vec<&str> {
    url.split(',').map(str::trim).filter(|server| !server.is_empty()).collect()
}

/// A publish subject: dot-separated non-empty tokens, no wildcards, no whitespace.
pub fn validate_subject(subject: &str) -> anyhow::Result<()> {
    let valid = !subject.is_empty()
        && subject
            .split('.')
            .all(|token| !token.is_empty() && token != "*" && token != ">" && !token.chars().any(char::is_whitespace))
        && !subject.contains(['*', '>']);
    if !valid {
        anyhow::bail!("invalid NATS subject {subject:?}: dot-separated tokens without wildcards or spaces");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_setting_names_one_server_or_several() {
        assert_eq!(servers("nats://a:4222"), vec!["nats://a:4222"]);
        assert_eq!(servers(" nats://a:4222, nats://b:4222 ,,"), vec!["nats://a:4222", "nats://b:4222"]);
    }

    #[test]
    fn subjects_are_plain_tokens() {
        for good in ["crm.contacts", "contacts", "crm.contacts-v2_x"] {
            assert!(validate_subject(good).is_ok(), "{good:?} refused");
        }
        for bad in ["", "crm..contacts", "crm.*", "crm.>", "crm.con tacts", ".crm", "crm.", "a*b"] {
            assert!(validate_subject(bad).is_err(), "{bad:?} accepted");
        }
    }
}
