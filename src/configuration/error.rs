//! Why settings could not be loaded.

/// A configuration value that cannot be used, named by its key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {key}: {message}")]
    Invalid { key: String, message: String },
    #[error("invalid configuration: {0}")]
    Load(config::ConfigError),
}

impl ConfigError {
    pub(super) fn invalid(key: &str, message: String) -> Self {
        Self::Invalid {
            key: key.to_owned(),
            message,
        }
    }
}

impl From<config::ConfigError> for ConfigError {
    /// Moves the key the config crate appends to its messages to the front.
    fn from(error: config::ConfigError) -> Self {
        match error {
            config::ConfigError::At {
                error,
                key: Some(key),
                ..
            } => Self::Invalid {
                key,
                message: error.to_string(),
            },
            config::ConfigError::Type {
                unexpected,
                expected,
                key: Some(key),
                ..
            } => Self::Invalid {
                key,
                message: format!("found {unexpected}, expected {expected}"),
            },
            other => Self::Load(other),
        }
    }
}
