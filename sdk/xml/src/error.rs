//! The single error type of the crate: every failure names the XML path
//! (`domain/devices/disk[2]/target/@dev`) and the problem.

/// An error found while parsing or validating a document.
///
/// `Display` renders as `"<path>: <problem>"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// The text is not well-formed XML.
    #[error("{path}: malformed xml: {problem}")]
    Syntax { path: String, problem: String },
    /// A required element is absent.
    #[error("{path}: missing required element")]
    MissingElement { path: String },
    /// A required attribute is absent.
    #[error("{path}: missing required attribute")]
    MissingAttribute { path: String },
    /// A value is present but not acceptable.
    #[error("{path}: {problem}")]
    Invalid { path: String, problem: String },
}

impl XmlError {
    /// The path of the offending element or attribute.
    pub fn path(&self) -> &str {
        match self {
            XmlError::Syntax { path, .. }
            | XmlError::MissingElement { path }
            | XmlError::MissingAttribute { path }
            | XmlError::Invalid { path, .. } => path,
        }
    }

    /// The problem, without the path.
    pub fn problem(&self) -> String {
        match self {
            XmlError::Syntax { problem, .. } => format!("malformed xml: {problem}"),
            XmlError::MissingElement { .. } => "missing required element".to_string(),
            XmlError::MissingAttribute { .. } => "missing required attribute".to_string(),
            XmlError::Invalid { problem, .. } => problem.clone(),
        }
    }

    pub(crate) fn invalid(path: impl Into<String>, problem: impl Into<String>) -> Self {
        XmlError::Invalid {
            path: path.into(),
            problem: problem.into(),
        }
    }

    pub(crate) fn missing_element(path: impl Into<String>) -> Self {
        XmlError::MissingElement { path: path.into() }
    }

    pub(crate) fn missing_attr(path: impl Into<String>) -> Self {
        XmlError::MissingAttribute { path: path.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_path_and_problem() {
        let e = XmlError::missing_attr("domain/devices/disk[2]/target/@dev");
        assert_eq!(
            e.to_string(),
            "domain/devices/disk[2]/target/@dev: missing required attribute"
        );
        let e = XmlError::missing_element("domain/name");
        assert_eq!(e.to_string(), "domain/name: missing required element");
        assert_eq!(e.path(), "domain/name");
    }
}
