//! Push webhook verification and payload parsing (`crates/agent/src/webhook.rs`).
//!
//! The input is an HTTP request without its request line: `Name: value` header lines,
//! a blank line, the body. The first line may name the provider (`github`, `gitlab`,
//! `gitea`, `bitbucket`, `generic`; default GitHub). In header values `{hmac}` is
//! replaced by the body's hex HMAC-SHA256 and `{secret}` by the secret, so signed
//! requests reach the payload parsers. Properties: no panic; an error is one line; an
//! accepted event names at least one repository, no empty or duplicate URL, and no
//! deleted (all-zero) commit; `repo_matches` is symmetric.
//!
//! `webhook.rs` is compiled here on its own (it depends on no other part of the agent),
//! so the fuzz build does not instrument the agent's cluster and HTTP dependencies.
#![no_main]

#[path = "../../crates/agent/src/webhook.rs"]
#[allow(dead_code)]
mod webhook;

use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use webhook::{Provider, repo_matches, verify_and_parse};

const SECRET: &[u8] = b"fuzz-secret";

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.lines().peekable();
    let provider = match lines.peek().and_then(|l| Provider::from_path(l.trim())) {
        Some(p) => {
            lines.next();
            p
        }
        None => Provider::GitHub,
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).expect("any key length");
    mac.update(body);
    let hmac = hex::encode(mac.finalize().into_bytes());
    let secret = std::str::from_utf8(SECRET).expect("ASCII");
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value
            .trim()
            .replace("{hmac}", &hmac)
            .replace("{secret}", secret);
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.append(name, value);
        }
    }
    match verify_and_parse(provider, &headers, body, SECRET) {
        Ok(event) => {
            assert!(!event.repos.is_empty());
            for (i, repo) in event.repos.iter().enumerate() {
                assert!(!repo.is_empty());
                assert!(!event.repos[..i].contains(repo), "duplicate {repo}");
            }
            assert!(event.git_ref.as_deref() != Some(""));
            if let Some(after) = &event.after {
                assert!(!after.is_empty() && !after.bytes().all(|b| b == b'0'));
            }
            let first = &event.repos[0];
            for other in &event.repos {
                assert_eq!(
                    repo_matches(first, std::slice::from_ref(other)),
                    repo_matches(other, std::slice::from_ref(first)),
                );
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(!message.contains('\n'), "multi-line error: {message:?}");
        }
    }
});
