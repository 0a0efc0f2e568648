//! The binary's error type: every failure becomes one clear message on stderr and an exit code
//! (never a panic): 2 for invalid arguments, 3 when the GPU backend is unavailable, 130 after
//! Ctrl-C, 1 otherwise.

use std::fmt;
use std::path::Path;

#[derive(Debug)]
pub enum CliError {
    /// A bad flag value or combination.
    Usage(String),
    /// A core-library error (bad model files, too-long prompt, ...), with context.
    Core {
        context: String,
        source: Box<bd3lm::Error>,
    },
    /// A file system problem with a path.
    Io { path: String, message: String },
    /// The GPU backend cannot be used.
    Gpu(String),
    /// Something else that went wrong, already phrased for the user.
    Failed(String),
    /// Stopped by Ctrl-C after printing what was done.
    Interrupted,
}

pub type CliResult<T> = Result<T, CliError>;

impl CliError {
    pub fn io(path: &Path, err: impl fmt::Display) -> Self {
        CliError::Io {
            path: path.display().to_string(),
            message: err.to_string(),
        }
    }

    pub fn core(context: impl Into<String>, source: bd3lm::Error) -> Self {
        CliError::Core {
            context: context.into(),
            source: Box::new(source),
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Gpu(_) => 3,
            CliError::Interrupted => 130,
            _ => 1,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Failed(m) => write!(f, "{m}"),
            CliError::Gpu(m) => write!(f, "GPU backend: {m}"),
            CliError::Interrupted => write!(f, "interrupted"),
            CliError::Io { path, message } => write!(f, "{path}: {message}"),
            CliError::Core { context, source } if context.is_empty() => write!(f, "{source}"),
            CliError::Core { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for CliError {}

impl From<bd3lm::Error> for CliError {
    fn from(source: bd3lm::Error) -> Self {
        match source {
            bd3lm::Error::InvalidArgument(m) => CliError::Usage(m),
            source => CliError::Core {
                context: String::new(),
                source: Box::new(source),
            },
        }
    }
}
