//! Publisher keys: ed25519, written as `ed25519:BASE64` (the public key) and a secret key
//! file holding `ed25519-secret:BASE64` of the 32-byte seed.

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use std::path::Path;

/// Errors about keys and signatures.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key's text is malformed.
    #[error("malformed {what} '{text}': expected {expected}")]
    Malformed {
        /// Which kind of key.
        what: &'static str,
        /// The text (public keys only; secret keys are never echoed).
        text: String,
        /// The expected form.
        expected: &'static str,
    },
    /// Reading a key file failed.
    #[error("cannot read key file '{path}'")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The signature does not verify.
    #[error("bad signature: the manifest was not signed by the key it names ({key})")]
    BadSignature {
        /// The key.
        key: String,
    },
}

/// A public key as text.
pub fn public_text(k: &VerifyingKey) -> String {
    format!("ed25519:{}", B64.encode(k.as_bytes()))
}

/// Parses `ed25519:BASE64`.
pub fn parse_public(text: &str) -> Result<VerifyingKey, KeyError> {
    let bad = || KeyError::Malformed {
        what: "public key",
        text: text.to_string(),
        expected: "ed25519:BASE64 of 32 bytes",
    };
    let b = text.trim().strip_prefix("ed25519:").ok_or_else(bad)?;
    let bytes: [u8; 32] = B64
        .decode(b)
        .map_err(|_| bad())?
        .try_into()
        .map_err(|_| bad())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| bad())
}

/// A fresh signing key.
pub fn generate() -> SigningKey {
    let seed: [u8; 32] = rand::random();
    SigningKey::from_bytes(&seed)
}

/// The secret key file's text.
pub fn secret_text(k: &SigningKey) -> String {
    format!("ed25519-secret:{}\n", B64.encode(k.to_bytes()))
}

/// Reads a secret key file.
pub fn read_secret(path: &Path) -> Result<SigningKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let bad = || KeyError::Malformed {
        what: "secret key file",
        text: path.display().to_string(),
        expected: "ed25519-secret:BASE64 of 32 bytes",
    };
    let b = text
        .trim()
        .strip_prefix("ed25519-secret:")
        .ok_or_else(bad)?;
    let bytes: [u8; 32] = B64
        .decode(b)
        .map_err(|_| bad())?
        .try_into()
        .map_err(|_| bad())?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// Writes a key pair: `path` (secret, mode 0600) and `path.pub` (public).
pub fn write_pair(path: &Path, k: &SigningKey) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(secret_text(k).as_bytes())?;
    let mut pubp = path.as_os_str().to_owned();
    pubp.push(".pub");
    std::fs::write(pubp, format!("{}\n", public_text(&k.verifying_key())))
}

/// Signs `data`, answering the signature as base64 text.
pub fn sign(k: &SigningKey, data: &[u8]) -> String {
    B64.encode(k.sign(data).to_bytes())
}

/// Verifies a base64 signature of `data` by the key `key_text`.
pub fn verify(key_text: &str, data: &[u8], sig_b64: &str) -> Result<(), KeyError> {
    let key = parse_public(key_text)?;
    let bad = || KeyError::BadSignature {
        key: key_text.to_string(),
    };
    let bytes: [u8; 64] = B64
        .decode(sig_b64.trim())
        .map_err(|_| bad())?
        .try_into()
        .map_err(|_| bad())?;
    key.verify(data, &Signature::from_bytes(&bytes))
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let k = generate();
        let pubt = public_text(&k.verifying_key());
        let sig = sign(&k, b"hello");
        verify(&pubt, b"hello", &sig).unwrap();
        assert!(matches!(
            verify(&pubt, b"hellO", &sig),
            Err(KeyError::BadSignature { .. })
        ));
        let other = public_text(&generate().verifying_key());
        assert!(verify(&other, b"hello", &sig).is_err());
        assert_eq!(parse_public(&pubt).unwrap(), k.verifying_key());
        assert!(parse_public("ed25519:AAAA").is_err());
    }

    #[test]
    fn key_files_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        let k = generate();
        write_pair(&p, &k).unwrap();
        assert_eq!(read_secret(&p).unwrap().to_bytes(), k.to_bytes());
        let pubt = std::fs::read_to_string(d.path().join("k.pub")).unwrap();
        assert_eq!(parse_public(&pubt).unwrap(), k.verifying_key());
    }
}
