//! Text a client sent that a log line names (a request path, a mapping name from one): cut
//! to a length no real path or name reaches, so that no client can write long log lines.

/// Bytes of client-sent text a log line shows at most.
const LONGEST: usize = 256;

/// `text`, cut after `LONGEST` bytes (at a character boundary).
pub(crate) fn capped(text: &str) -> &str {
    if text.len() <= LONGEST {
        return text;
    }
    let end = (0..=LONGEST).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        assert_eq!(capped("/webhooks/hubspot"), "/webhooks/hubspot");
        let long = "é".repeat(200);
        let cut = capped(&long);
        assert!(cut.len() <= LONGEST && long.starts_with(cut) && cut.len() >= LONGEST - 1, "{}", cut.len());
    }
}
