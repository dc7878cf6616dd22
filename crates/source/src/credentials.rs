//! Repository credentials: what a fetch authenticates with, and the SSH session that
//! carries a private key and `known_hosts` to the `ssh` program.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use crate::SourceError;

/// The Secret keys for HTTPS (`username` + `password`, or `bearerToken`) and SSH
/// (`identity` + `known_hosts`), as Flux's `GitRepository` reads them.
pub const KEYS: [&str; 5] = [
    "username",
    "password",
    "bearerToken",
    "identity",
    "known_hosts",
];

/// What a fetch authenticates with. Mirrors are kept per credential: a commit fetched
/// with one is never served to a fetch with another (see [`GitCache`](crate::GitCache)).
///
/// `Debug` shows the credential's name and kind, never its material.
#[derive(Clone)]
pub struct Credentials {
    id: String,
    auth: Auth,
}

#[derive(Clone)]
enum Auth {
    Ambient,
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    Bearer(String),
    Ssh {
        identity: Vec<u8>,
        known_hosts: Vec<u8>,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("id", &self.id)
            .field("kind", &self.kind())
            .finish()
    }
}

impl Default for Credentials {
    fn default() -> Self {
        Self::ambient()
    }
}

impl Credentials {
    /// The process's own Git configuration (credential helpers) and SSH setup: push mode.
    pub fn ambient() -> Self {
        Self {
            id: String::new(),
            auth: Auth::Ambient,
        }
    }

    /// No credentials at all, not even the process's own: the agent's apps without a
    /// Secret. HTTP(S) fetches get no credential helper; SSH is refused (it needs a key).
    pub fn anonymous() -> Self {
        Self {
            id: "anonymous".into(),
            auth: Auth::Anonymous,
        }
    }

    /// Credentials from the keys of a Secret (or files of a directory), named `id` in
    /// messages and mirror keys (e.g. `Secret team-a/git`): `identity` (with `known_hosts`)
    /// for SSH, else `bearerToken`, else `username` and `password`.
    pub fn from_keys(
        id: impl Into<String>,
        keys: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Self, SourceError> {
        let id = id.into();
        let invalid = |message: String| SourceError::Credentials {
            id: id.clone(),
            message,
        };
        let text = |key: &str| -> Result<Option<String>, SourceError> {
            keys.get(key)
                .map(|v| {
                    String::from_utf8(v.clone())
                        .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
                        .map_err(|_| invalid(format!("key {key} is not UTF-8 text")))
                })
                .transpose()
        };
        let auth = if let Some(identity) = keys.get("identity") {
            let known_hosts = keys
                .get("known_hosts")
                .filter(|k| !k.iter().all(u8::is_ascii_whitespace))
                .ok_or_else(|| {
                    invalid(
                        "key known_hosts is required with identity (host keys are always checked)"
                            .into(),
                    )
                })?;
            Auth::Ssh {
                identity: identity.clone(),
                known_hosts: known_hosts.clone(),
            }
        } else if let Some(token) = text("bearerToken")? {
            Auth::Bearer(token)
        } else {
            match (text("username")?, text("password")?) {
                (Some(username), Some(password)) => Auth::Basic { username, password },
                (Some(_), None) => return Err(invalid("key username needs key password".into())),
                (None, Some(_)) => return Err(invalid("key password needs key username".into())),
                (None, None) => {
                    return Err(invalid(format!(
                        "none of the keys {} is set",
                        KEYS.join(", ")
                    )));
                }
            }
        };
        Ok(Self { id, auth })
    }

    /// Credentials from the files of `dir` named like the Secret keys (a mounted Secret).
    pub fn from_dir(dir: &Path) -> Result<Self, SourceError> {
        let mut keys = BTreeMap::new();
        for key in KEYS {
            let path = dir.join(key);
            match std::fs::read(&path) {
                Ok(value) => {
                    keys.insert(key.to_string(), value);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(SourceError::io(format!("reading {}", path.display()))(e));
                }
            }
        }
        Self::from_keys(format!("credentials directory {}", dir.display()), &keys)
    }

    /// The name of these credentials (empty for ambient ones), as messages and mirror keys
    /// use it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether these are the process's own (the default).
    pub(crate) fn is_ambient(&self) -> bool {
        matches!(self.auth, Auth::Ambient)
    }

    fn kind(&self) -> &'static str {
        match self.auth {
            Auth::Ambient => "ambient",
            Auth::Anonymous => "anonymous",
            Auth::Basic { .. } => "basic",
            Auth::Bearer(_) => "bearer",
            Auth::Ssh { .. } => "ssh",
        }
    }

    /// Checks that these credentials fit `url`: a key only for SSH, a token or password
    /// only for HTTPS (or plain HTTP to a loopback address), and SSH never anonymous.
    pub(crate) fn check_url(&self, url: &gix::Url) -> Result<(), SourceError> {
        use gix::url::Scheme;
        let ssh = matches!(url.scheme, Scheme::Ssh);
        let http = matches!(url.scheme, Scheme::Http | Scheme::Https);
        let loopback = url.host().is_some_and(|h| {
            h == "localhost"
                || h.trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        let message = match &self.auth {
            Auth::Ssh { .. } if !ssh => {
                "an SSH key (identity) is only for ssh:// or host:path repositories"
            }
            Auth::Basic { .. } | Auth::Bearer(_) if !http => {
                "a username/password or bearerToken is only for http(s):// repositories"
            }
            Auth::Basic { .. } | Auth::Bearer(_)
                if matches!(url.scheme, Scheme::Http) && !loopback =>
            {
                "a username/password or bearerToken is never sent in clear text: use https://"
            }
            Auth::Anonymous if ssh => {
                "an SSH repository needs credentials with identity and known_hosts"
            }
            _ => return Ok(()),
        };
        Err(SourceError::Credentials {
            id: match self.id.as_str() {
                "anonymous" => "no credentials".into(),
                id => id.to_string(),
            },
            message: message.into(),
        })
    }

    /// The HTTP header these credentials send with every request, if any.
    pub(crate) fn http_header(&self) -> Option<String> {
        use base64::Engine;
        match &self.auth {
            Auth::Bearer(token) => Some(format!("Authorization: Bearer {token}")),
            Auth::Basic { username, password } => Some(format!(
                "Authorization: Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            _ => None,
        }
    }

    /// Whether the process's Git credential helpers may answer an HTTP authentication
    /// challenge (only for ambient credentials).
    pub(crate) fn uses_helpers(&self) -> bool {
        self.is_ambient()
    }

    /// For SSH credentials: a private directory with the key (mode 0600) and
    /// `known_hosts`, removed when the session is dropped, and the `ssh` command using
    /// only them, host keys checked, killed at `timeout`.
    pub(crate) fn ssh_session(&self, timeout: Duration) -> Result<Option<SshSession>, SourceError> {
        let Auth::Ssh {
            identity,
            known_hosts,
        } = &self.auth
        else {
            return Ok(None);
        };
        let dir = tempfile::Builder::new()
            .prefix("ferry-ssh-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()
            .map_err(SourceError::io("creating a directory for SSH credentials"))?;
        let write = |name: &str, content: &[u8]| -> Result<std::path::PathBuf, SourceError> {
            let path = dir.path().join(name);
            let mut file = std::fs::File::options()
                .create_new(true)
                .write(true)
                .mode(0o600)
                .open(&path)
                .map_err(SourceError::io(format!("writing {}", path.display())))?;
            file.write_all(content)
                .and_then(|()| match content.last() {
                    Some(b'\n') => Ok(()),
                    _ => file.write_all(b"\n"),
                })
                .map_err(SourceError::io(format!("writing {}", path.display())))?;
            Ok(path)
        };
        let key = write("identity", identity)?;
        let hosts = write("known_hosts", known_hosts)?;
        let log = dir.path().join("ssh.log");
        // Killed just after the deadline, so the fetch ends as timed out.
        let kill_after = timeout.as_secs_f64() + 0.2;
        let seconds = timeout.as_secs_f64().ceil().max(1.0);
        let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
        let command = format!(
            "timeout -k 2 {kill_after:.1} ssh -F /dev/null -i {key} -o IdentitiesOnly=yes \
             -o IdentityAgent=none -o BatchMode=yes -o StrictHostKeyChecking=yes \
             -o UserKnownHostsFile={hosts} -o GlobalKnownHostsFile=/dev/null \
             -o ConnectTimeout={seconds:.0} -o ServerAliveInterval=5 -o ServerAliveCountMax=3 \
             -o LogLevel=ERROR -E {log}",
            key = quote(&key),
            hosts = quote(&hosts),
            log = quote(&log),
        );
        Ok(Some(SshSession {
            command,
            log,
            _dir: dir,
        }))
    }
}

/// A fetch's SSH setup: the command, and `ssh`'s log of errors (read to explain a failure).
pub(crate) struct SshSession {
    /// The `core.sshCommand` to fetch with.
    pub(crate) command: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SshSession {
    /// What `ssh` logged, on one line.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn secret_keys_select_the_kind_and_incomplete_ones_are_named() {
        let kind = |pairs: &[(&str, &str)]| {
            Credentials::from_keys("Secret team-a/git", &keys(pairs)).map(|c| c.kind())
        };
        assert_eq!(
            kind(&[("username", "u"), ("password", "p\n")]).unwrap(),
            "basic"
        );
        assert_eq!(kind(&[("bearerToken", "t")]).unwrap(), "bearer");
        assert_eq!(
            kind(&[("identity", "k"), ("known_hosts", "h k")]).unwrap(),
            "ssh"
        );
        for (pairs, message) in [
            (&[("identity", "k")][..], "known_hosts is required"),
            (&[("username", "u")][..], "username needs key password"),
            (&[("password", "p")][..], "password needs key username"),
            (&[("token", "t")][..], "none of the keys"),
        ] {
            let err = kind(pairs).unwrap_err().to_string();
            assert!(
                err.starts_with("Secret team-a/git: ") && err.contains(message),
                "{err}"
            );
        }
        let secret = Credentials::from_keys(
            "Secret team-a/git",
            &keys(&[("username", "u"), ("password", "hunter2")]),
        )
        .unwrap();
        assert!(!format!("{secret:?}").contains("hunter2"));
    }

    #[test]
    fn the_ssh_key_is_private_and_removed_after_the_session() {
        let creds = Credentials::from_keys(
            "Secret a/b",
            &keys(&[
                ("identity", "KEY"),
                ("known_hosts", "host ssh-ed25519 AAAA"),
            ]),
        )
        .unwrap();
        let session = creds
            .ssh_session(Duration::from_secs(30))
            .unwrap()
            .expect("an SSH session");
        let dir = session._dir.path().to_path_buf();
        let mode = |p: &Path| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).unwrap().permissions().mode() & 0o777
        };
        assert_eq!(mode(&dir.join("identity")), 0o600);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(std::fs::read(dir.join("identity")).unwrap(), b"KEY\n");
        for option in [
            "StrictHostKeyChecking=yes",
            "IdentitiesOnly=yes",
            "BatchMode=yes",
            "timeout -k 2 30.2 ssh",
        ] {
            assert!(session.command.contains(option), "{}", session.command);
        }
        assert!(!session.command.contains("StrictHostKeyChecking=no"));
        drop(session);
        assert!(!dir.exists());
    }
}
