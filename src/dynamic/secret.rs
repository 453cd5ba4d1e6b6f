//! The server's secret key, which signs what the server hands to browsers
//! (CSRF tokens, session cookies). It comes from `KILN_SECRET_KEY` when
//! set, else from `server.secret_key_file`; otherwise it is generated on
//! first start and kept in `ROOT/.kiln/secret.key` (mode 0600), so tokens
//! and sessions survive restarts. There is no built-in default.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The environment variable that supplies the key (any text of 32 bytes or more).
pub(crate) const ENV: &str = "KILN_SECRET_KEY";

/// A 256-bit key.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// A key for one purpose, so one use's MAC never verifies for another.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        blake3::derive_key(&format!("kiln 2026 {purpose}"), &self.0)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> SecretKey {
        SecretKey(bytes)
    }
}

/// Where the generated key is kept.
pub(crate) fn key_path(root: &Path) -> PathBuf {
    root.join(".kiln").join("secret.key")
}

/// The key from the environment, else from the configured file, else
/// from (or newly into) the generated key file.
pub(crate) fn load(root: &Path, configured: Option<&Path>) -> io::Result<SecretKey> {
    if let Ok(text) = std::env::var(ENV) {
        return from_material(ENV, text.as_bytes());
    }
    if let Some(file) = configured {
        let path = root.join(file);
        let bytes = std::fs::read(&path).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("server.secret_key_file {}: {err}", path.display()),
            )
        })?;
        return from_material(
            &format!("server.secret_key_file {}", path.display()),
            &bytes,
        );
    }
    let path = key_path(root);
    match std::fs::read(&path) {
        Ok(bytes) => key_from_file(&path, &bytes),
        Err(err) if err.kind() == io::ErrorKind::NotFound => generate(&path),
        Err(err) => Err(io::Error::new(
            err.kind(),
            format!("{}: {err}", path.display()),
        )),
    }
}

/// A key derived from secret material of at least 32 bytes.
fn from_material(source: &str, material: &[u8]) -> io::Result<SecretKey> {
    if material.len() < 32 {
        return Err(io::Error::other(format!(
            "{source}: the key must be at least 32 bytes long"
        )));
    }
    Ok(SecretKey(blake3::derive_key(
        "kiln 2026 configured secret",
        material,
    )))
}

fn key_from_file(path: &Path, bytes: &[u8]) -> io::Result<SecretKey> {
    let key: [u8; 32] = bytes.try_into().map_err(|_| {
        io::Error::other(format!(
            "{}: expected a 32-byte key; delete the file to generate a new one",
            path.display()
        ))
    })?;
    Ok(SecretKey(key))
}

fn generate(path: &Path) -> io::Result<SecretKey> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|err| io::Error::other(format!("no randomness: {err}")))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(mut file) => {
            file.write_all(&key)?;
            file.sync_all()?;
            Ok(SecretKey(key))
        }
        // Another process created it first: use theirs.
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            key_from_file(path, &std::fs::read(path)?)
        }
        Err(err) => Err(io::Error::new(
            err.kind(),
            format!("{}: {err}", path.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_generated_key_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let first = load(dir.path(), None).unwrap();
        let mode = std::fs::metadata(key_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = load(dir.path(), None).unwrap();
        assert_eq!(first.0, second.0);
        assert_ne!(first.derive("a"), first.derive("b"));
    }

    #[test]
    fn a_configured_key_file_is_used_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key"), [9u8; 40]).unwrap();
        let configured = load(dir.path(), Some(Path::new("key"))).unwrap();
        assert_eq!(
            configured.0,
            load(dir.path(), Some(Path::new("key"))).unwrap().0
        );
        assert!(!key_path(dir.path()).exists(), "nothing generated");
        std::fs::write(dir.path().join("short"), [9u8; 8]).unwrap();
        let err = load(dir.path(), Some(Path::new("short"))).unwrap_err();
        assert!(err.to_string().contains("at least 32 bytes"), "{err}");
    }
}
