//! Conversion errors. Each names the `.vmx` key or the XML element and the value at fault.

/// An error of the `.vmx` reader or of a conversion.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum VmxError {
    /// A `.vmx` line that is not `key = "value"`.
    #[error("malformed .vmx line {line}: '{text}'")]
    Syntax { line: usize, text: String },
    /// A `.vmx` entry whose value is not acceptable.
    #[error("VMX entry '{key}' has invalid value '{value}': {reason}")]
    BadValue {
        key: String,
        value: String,
        reason: String,
    },
    /// A `.vmx` entry that must be present.
    #[error("missing VMX entry '{key}'")]
    Missing { key: String },
    /// An element or attribute of the domain XML that cannot be converted.
    #[error("{path}: {reason}")]
    Xml { path: String, reason: String },
    /// The domain XML does not parse.
    #[error("domain XML: {0}")]
    Parse(String),
}

impl VmxError {
    pub(crate) fn bad(key: &str, value: &str, reason: impl Into<String>) -> VmxError {
        VmxError::BadValue {
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn xml(path: impl Into<String>, reason: impl Into<String>) -> VmxError {
        VmxError::Xml {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
