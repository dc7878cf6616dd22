//! Redaction of credentials in repository URLs: the one function every output edge
//! (logs, metrics labels, the API, Events, history, the dashboard) passes URLs and
//! messages through.
//!
//! `scheme://user:password@host/…` loses its user information (`scheme://host/…`),
//! except over SSH (`ssh://`, `git@host:path`), where the user name is the account
//! logged in to (`git`), not a secret: only a password is removed there.

use std::borrow::Cow;

/// `url` without credentials (see the module documentation); anything else unchanged.
pub fn redact_url(url: &str) -> Cow<'_, str> {
    redact_text(url)
}

/// `text` with the credentials of every URL in it removed, e.g. an error message that
/// quotes a repository URL.
pub fn redact_text(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = text[search..].find("://") {
        let start = search + found + 3;
        let scheme = scheme_before(&text[..search + found]);
        let authority_end = text[start..]
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .map_or(text.len(), |i| start + i);
        search = authority_end.max(start);
        let Some(at) = text[start..authority_end].rfind('@') else {
            continue;
        };
        let userinfo = &text[start..start + at];
        let keep = match scheme.eq_ignore_ascii_case("ssh") {
            true => userinfo.split(':').next(),
            false => None,
        };
        out.push_str(&text[copied..start]);
        if let Some(user) = keep {
            out.push_str(user);
            out.push('@');
        }
        copied = start + at + 1;
    }
    if copied == 0 {
        return match scp_password(text) {
            Some((from, to)) => Cow::Owned(format!("{}{}", &text[..from], &text[to..])),
            None => Cow::Borrowed(text),
        };
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// The scheme ending at the end of `before` (the letters, digits, `+`, `-`, `.` before `://`).
fn scheme_before(before: &str) -> &str {
    let start = before
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
        .map_or(0, |i| i + 1);
    &before[start..]
}

/// The byte range of `:password` in an scp-like `user:password@host:path` that is
/// the whole of `text` (no scheme, no spaces), if any.
fn scp_password(text: &str) -> Option<(usize, usize)> {
    if text.contains("://") || text.contains(char::is_whitespace) {
        return None;
    }
    let at = text.find('@')?;
    let colon = text[..at].find(':')?;
    text[at..].contains(':').then_some((colon, at))
}

/// Whether `url` carries credentials that [`redact_url`] would remove.
pub fn has_credentials(url: &str) -> bool {
    redact_url(url) != url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_information_is_removed_from_urls() {
        for (url, redacted) in [
            (
                "https://user:s3cret@git.example.com/org/repo.git",
                "https://git.example.com/org/repo.git",
            ),
            (
                "https://ghp_token@github.com/org/repo",
                "https://github.com/org/repo",
            ),
            (
                "http://u:p@127.0.0.1:8080/r.git?x=1",
                "http://127.0.0.1:8080/r.git?x=1",
            ),
            (
                "ssh://git:pw@git.example.com:2222/org/repo.git",
                "ssh://git@git.example.com:2222/org/repo.git",
            ),
            (
                "ssh://git@git.example.com/org/repo.git",
                "ssh://git@git.example.com/org/repo.git",
            ),
            ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
            (
                "git:pw@github.com:org/repo.git",
                "git@github.com:org/repo.git",
            ),
            ("https://github.com/org/repo", "https://github.com/org/repo"),
            ("/srv/git/repo", "/srv/git/repo"),
            ("", ""),
        ] {
            assert_eq!(redact_url(url), redacted, "{url}");
            assert_eq!(has_credentials(url), url != redacted, "{url}");
        }
    }

    #[test]
    fn every_url_in_a_message_is_redacted() {
        let message = "repository https://bot:tok3n@git.example.com/a.git: cannot fetch: \
                       redirected to https://bot:tok3n@mirror.example.com/a.git (see \
                       https://docs.example.com/x)";
        let redacted = redact_text(message);
        assert!(!redacted.contains("tok3n"), "{redacted}");
        assert_eq!(
            redacted,
            "repository https://git.example.com/a.git: cannot fetch: redirected to \
             https://mirror.example.com/a.git (see https://docs.example.com/x)"
        );
        assert!(matches!(redact_text("no url here"), Cow::Borrowed(_)));
    }
}
