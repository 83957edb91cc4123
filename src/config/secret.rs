//! Secrets given as files (Kubernetes Secret volumes, Docker secrets, Chamilo's `SCIM_TOKEN_FILE`).
//!
//! Every secret given as a file (`scim.token_files`, `SCIM_TOKEN_FILE`, the `[chamilo]`
//! `*_file` keys) is read through [`SecretReader`] inside the loader, so that the file is
//! watched and hashed for reload; nothing else reads secret files.

use std::path::Path;

use crate::secret::Secret;

/// Why a secret value or file was refused. The messages never contain the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("the secret is empty or only whitespace")]
    Empty,
    #[error("the secret is not valid UTF-8")]
    NotUtf8,
    #[error("the secret contains whitespace or control characters inside it")]
    InnerWhitespace,
}

impl Secret {
    /// Checks a secret given inline (configuration or environment).
    pub fn checked(value: &str) -> Result<Secret, SecretError> {
        if value.trim().is_empty() {
            return Err(SecretError::Empty);
        }
        // A token with a newline or space in the middle is almost always a paste error, and
        // would never match an `Authorization` header.
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(SecretError::InnerWhitespace);
        }
        Ok(Secret::new(value))
    }

    /// Parses a secret file's contents: trailing line breaks (and surrounding whitespace that
    /// editors add) are trimmed, an empty file is refused.
    pub fn from_file_bytes(bytes: &[u8]) -> Result<Secret, SecretError> {
        let text = std::str::from_utf8(bytes).map_err(|_| SecretError::NotUtf8)?;
        Secret::checked(text.trim())
    }
}

/// Reads every file a configuration refers to, remembering each path (to watch its directory)
/// and hashing path and content (to tell a real change from a spurious file event).
#[derive(Default)]
pub struct SecretReader {
    hasher: sha2::Sha256,
    files: Vec<std::path::PathBuf>,
}

impl SecretReader {
    /// Reads a file and records it; a failure is recorded too, so that fixing it is a change.
    pub fn read(&mut self, path: &Path) -> std::io::Result<Vec<u8>> {
        use sha2::Digest;
        self.files.push(path.to_path_buf());
        self.hasher.update(path.as_os_str().as_encoded_bytes());
        self.hasher.update([0]);
        let result = std::fs::read(path);
        match &result {
            Ok(bytes) => {
                self.hasher.update((bytes.len() as u64).to_le_bytes());
                self.hasher.update(bytes);
            }
            Err(e) => self
                .hasher
                .update(format!("error:{:?}", e.kind()).as_bytes()),
        }
        result
    }

    /// Hashes a value that is not a file (the configuration text when given inline, say).
    pub fn mix(&mut self, bytes: &[u8]) {
        use sha2::Digest;
        self.hasher.update((bytes.len() as u64).to_le_bytes());
        self.hasher.update(bytes);
    }

    /// Reads a secret file, trimming its trailing newline.
    pub fn secret(&mut self, path: &Path) -> Result<Secret, SecretError> {
        let bytes = self.read(path).map_err(|e| SecretError::Unreadable {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Secret::from_file_bytes(&bytes)
    }

    /// The files read so far and the hash of everything read.
    pub fn finish(self) -> (Vec<std::path::PathBuf>, [u8; 32]) {
        use sha2::Digest;
        (self.files, self.hasher.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_newline_is_trimmed() {
        let s = Secret::from_file_bytes(b"abc123\n").unwrap();
        assert_eq!(s.expose(), "abc123");
        let s = Secret::from_file_bytes(b"abc123\r\n").unwrap();
        assert_eq!(s.expose(), "abc123");
    }

    #[test]
    fn empty_and_whitespace_are_refused() {
        assert_eq!(Secret::from_file_bytes(b""), Err(SecretError::Empty));
        assert_eq!(Secret::from_file_bytes(b" \n\t\n"), Err(SecretError::Empty));
        assert_eq!(Secret::checked("   "), Err(SecretError::Empty));
        assert_eq!(Secret::checked("ab cd"), Err(SecretError::InnerWhitespace));
        assert_eq!(
            Secret::from_file_bytes(&[0xff, 0xfe]),
            Err(SecretError::NotUtf8)
        );
    }

    #[test]
    fn reader_hash_changes_with_content_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let hash = |p: &Path| {
            let mut r = SecretReader::default();
            let _ = r.read(p);
            r.finish().1
        };
        let missing = hash(&path);
        std::fs::write(&path, "one\n").unwrap();
        let one = hash(&path);
        std::fs::write(&path, "two\n").unwrap();
        let two = hash(&path);
        assert_ne!(missing, one);
        assert_ne!(one, two);
        assert_eq!(two, hash(&path));
    }
}
