//! The server's secret key, which signs what the server hands to browsers
//! (CSRF tokens, session cookies). It comes from `KILN_SECRET_KEY` when
//! set, else from `server.secret_key_file`; otherwise it is generated on
//! first start and kept in `ROOT/.kiln/secret.key` (mode 0600), so tokens
//! and sessions survive restarts. There is no built-in default.
//!
//! A key anyone could guess or read is refused, with the reason: material
//! shorter than 32 bytes or estimated below 128 bits of entropy (`aaaa…`,
//! a short word repeated), and a key file that other users may read.

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

    /// A short name for the site this key belongs to: every instance of a
    /// deployment shares the key and so the name; another site, or another
    /// stage with its own key, has another. Redis keys and channels carry
    /// it, so sites sharing a Redis never see each other's entries.
    pub(crate) fn site_identity(&self) -> String {
        self.derive("site identity")[..6]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
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
        check_private(&path, "server.secret_key_file ")?;
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
        Ok(bytes) => {
            check_private(&path, "")?;
            key_from_file(&path, &bytes)
        }
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
    let bits = estimated_entropy_bits(material);
    if bits < MIN_ENTROPY_BITS {
        return Err(io::Error::other(format!(
            "{source}: the key looks guessable (about {bits:.0} bits of entropy, {MIN_ENTROPY_BITS:.0} needed); use random bytes, such as the output of `openssl rand -hex 32`"
        )));
    }
    Ok(SecretKey(blake3::derive_key(
        "kiln 2026 configured secret",
        material,
    )))
}

/// The least estimated entropy a configured key may have.
const MIN_ENTROPY_BITS: f64 = 128.0;

/// A conservative estimate of the entropy in `material`: the Shannon
/// entropy of its byte frequencies times its length, taken over its
/// shortest repeating unit (so `abcabcabc…` counts as `abc`). Random hex
/// of 64 characters scores about 240 bits, a 44-character base64 key about
/// 210; `aaaa…` scores 0 and a repeated word a few dozen.
fn estimated_entropy_bits(material: &[u8]) -> f64 {
    // The first KiB says enough (and keeps the period search quadratic in
    // a small number, whatever size of file is configured).
    let material = &material[..material.len().min(1024)];
    let unit = shortest_period(material);
    let unit = &material[..unit];
    let mut counts = [0usize; 256];
    for &byte in unit {
        counts[usize::from(byte)] += 1;
    }
    let len = unit.len() as f64;
    let per_byte: f64 = counts
        .iter()
        .filter(|&&count| count > 0)
        .map(|&count| {
            let p = count as f64 / len;
            -p * p.log2()
        })
        .sum();
    per_byte * len
}

/// The length of the shortest prefix whose repetition makes up `bytes`
/// (a final partial repetition allowed); `bytes.len()` when none does.
fn shortest_period(bytes: &[u8]) -> usize {
    (1..bytes.len())
        .find(|&period| (period..bytes.len()).all(|at| bytes[at] == bytes[at - period]))
        .unwrap_or(bytes.len())
}

/// Refuses a secret file other users may read.
pub(crate) fn check_private(path: &Path, setting: &str) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|err| io::Error::new(err.kind(), format!("{setting}{}: {err}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(io::Error::other(format!(
            "{setting}{}: the key file may be read by other users (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
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

    /// Writes `bytes` as a key file only its owner may read.
    fn private_file(path: &Path, bytes: &[u8]) {
        std::fs::write(path, bytes).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    #[test]
    fn a_configured_key_file_is_used_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let random: Vec<u8> = (0..40u8).map(|n| n.wrapping_mul(97) ^ 0x5a).collect();
        private_file(&dir.path().join("key"), &random);
        let configured = load(dir.path(), Some(Path::new("key"))).unwrap();
        assert_eq!(
            configured.0,
            load(dir.path(), Some(Path::new("key"))).unwrap().0
        );
        assert!(!key_path(dir.path()).exists(), "nothing generated");
        private_file(&dir.path().join("short"), &random[..8]);
        let err = load(dir.path(), Some(Path::new("short"))).unwrap_err();
        assert!(err.to_string().contains("at least 32 bytes"), "{err}");
    }

    /// Regression (hardening): a key file other users can read signed
    /// sessions anyone on the machine could forge.
    #[test]
    fn a_secret_key_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let random: Vec<u8> = (0..40u8).map(|n| n.wrapping_mul(97) ^ 0x5a).collect();
        std::fs::write(dir.path().join("key"), &random).unwrap();
        std::fs::set_permissions(
            dir.path().join("key"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let err = load(dir.path(), Some(Path::new("key"))).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("server.secret_key_file"), "{message}");
        assert!(message.contains("chmod 600"), "{message}");
        load(dir.path(), None).expect("the generated key is private");
        std::fs::set_permissions(key_path(dir.path()), std::fs::Permissions::from_mode(0o640))
            .unwrap();
        assert!(
            load(dir.path(), None).is_err(),
            "a loosened generated key too"
        );
    }

    /// Regression (hardening): `KILN_SECRET_KEY=aaaa…` (32 bytes) was accepted.
    #[test]
    fn a_guessable_secret_key_is_refused() {
        for guessable in [
            "a".repeat(40),
            "password".repeat(8),
            "0123456789abcdef0123456789abcdef".to_string(),
        ] {
            let err = from_material(ENV, guessable.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("guessable"), "{guessable}: {err}");
        }
        for random in [
            "3f1c9a0be27d4c58a9e6b1f07d2c8e4a5b6f0d1e2c3a4b5968778695a4b3c2d1",
            "q8Zt1mV0cX5yB2nR7kL4wH9jD3sF6gA0pE1uI2oT5rY=",
        ] {
            from_material(ENV, random.as_bytes()).expect(random);
        }
    }
}
