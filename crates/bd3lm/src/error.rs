//! The one error type of the core crate. Every bad input (corrupt file, wrong shape, unknown
//! config value, too-long prompt, failed device) ends up here with a message that names what
//! was wrong and, where it helps, what to do about it.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("{file}: {message}")]
    Io { file: String, message: String },

    #[error("config.json: field `{field}`: {message}")]
    Config { field: String, message: String },

    #[error(
        "config.json: model_length {model_length} is not a multiple of block_size {block_size}"
    )]
    BlockSizeMismatch {
        model_length: usize,
        block_size: usize,
    },

    #[error("{file}: not a valid safetensors file: {message}")]
    Safetensors { file: String, message: String },

    #[error("{file}: tensor `{name}` is missing")]
    MissingTensor { file: String, name: String },

    #[error("{file}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    TensorShape {
        file: String,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    #[error("{file}: tensor `{name}` has dtype {found}, expected {expected}")]
    TensorDtype {
        file: String,
        name: String,
        expected: String,
        found: String,
    },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("tokenizer: it has {found} tokens but the model expects {expected} (vocab_size - 1; the last id is MASK)")]
    TokenizerVocab { found: usize, expected: usize },

    #[error("package {file}: {message}")]
    Package { file: String, message: String },

    #[error("package {file}: SHA-256 mismatch (manifest {expected}, file {found}); the file is corrupt or was changed")]
    HashMismatch {
        file: String,
        expected: String,
        found: String,
    },

    #[error("package {file}: size mismatch (manifest says {expected} bytes, got {found}); the file is truncated or was changed")]
    SizeMismatch {
        file: String,
        expected: u64,
        found: u64,
    },

    #[error("package manifest: format_version {found} is newer than this build supports ({supported}); update bd3lm")]
    UnsupportedPackageVersion { found: u64, supported: u32 },

    #[error("the prompt is {tokens} tokens but the model's context holds at most {max} prompt tokens (model_length - 1, leaving room to generate); shorten it or keep only its end")]
    PromptTooLong { tokens: usize, max: usize },

    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    #[error("fixture {file}: {message}")]
    Fixture { file: String, message: String },

    #[error("GPU: {0}")]
    Backend(String),

    #[error("GPU device lost: {0}")]
    DeviceLost(String),

    #[error(transparent)]
    Hub(#[from] crate::hub::HubError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(file: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Error::Io {
            file: file.into(),
            message: err.to_string(),
        }
    }

    pub fn config(field: &str, message: impl Into<String>) -> Self {
        Error::Config {
            field: field.to_string(),
            message: message.into(),
        }
    }

    pub fn package(file: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Package {
            file: file.into(),
            message: message.into(),
        }
    }
}
