//! Everything that can go wrong on the page, each with a message in plain words that says
//! what happened and what the reader can do about it. Shown in the page, never a panic.

use std::fmt;

#[derive(Debug)]
pub enum PageError {
    /// `fetch` itself failed: offline, server down, or (for another site) blocked by CORS.
    Unreachable {
        url: String,
        other_site: Option<String>,
        detail: String,
    },
    /// The server answered with an error status.
    Http {
        url: String,
        status: u16,
        status_text: String,
    },
    /// The connection broke while a file was streaming in.
    Interrupted { url: String, detail: String },
    /// A file failed its size or SHA-256 check even after one fresh download.
    BadFile {
        file: String,
        url: String,
        reason: String,
    },
    /// The manifest or a shard is not a valid package (bad JSON, missing tensor, ...).
    Package(bd3lm::Error),
    /// The run cannot start with these settings (e.g. a prompt longer than the context).
    Input(bd3lm::Error),
    /// The engine failed while loading or generating.
    Engine(bd3lm::Error),
    /// The GPU was taken away (driver reset, tab in the background too long, ...).
    DeviceLost(String),
    /// A browser API threw something unexpected.
    Browser(String),
    /// Loading a model by Hugging Face Hub id failed (not found, private, corrupt, ...).
    Hub(bd3lm::hub::HubError),
    /// The browser's storage cannot hold the converted package.
    Quota(String),
}

impl PageError {
    /// Engine errors keep device loss apart: the page offers a restart for it.
    pub fn from_engine(err: bd3lm::Error) -> Self {
        match err {
            bd3lm::Error::DeviceLost(message) => PageError::DeviceLost(message),
            other => PageError::Engine(other),
        }
    }

    pub fn is_device_lost(&self) -> bool {
        matches!(self, PageError::DeviceLost(_))
    }
}

impl fmt::Display for PageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageError::Unreachable { url, other_site: Some(origin), detail } => write!(
                f,
                "The browser could not fetch {url} ({detail}). The package is on another site ({origin}): \
                 a browser only lets this page read files from another site when that server allows it \
                 with the HTTP header `Access-Control-Allow-Origin` (CORS). Ask whoever hosts the package \
                 to allow CORS for this page, or put the package folder next to the page. It can also mean \
                 that the server is down or that you are offline."
            ),
            PageError::Unreachable { url, other_site: None, detail } => write!(
                f,
                "The browser could not fetch {url} ({detail}): the server is not answering or you are offline. \
                 Files that were already downloaded are kept; try again when the connection is back."
            ),
            PageError::Http { url, status: 404, .. } => write!(
                f,
                "{url} was not found (HTTP 404). The package URL must point at the folder that holds \
                 manifest.json, as written by `bd3lm quantize`."
            ),
            PageError::Http { url, status, status_text } => {
                write!(f, "The server answered HTTP {status} {status_text} for {url}. Try again later or check the URL.")
            }
            PageError::Interrupted { url, detail } => write!(
                f,
                "The download of {url} was interrupted ({detail}). Files that finished are kept in the \
                 browser's cache: press Load again to resume from there."
            ),
            PageError::BadFile { file, url, reason } => write!(
                f,
                "{file} is corrupt: {reason}. It was downloaded a second time from {url} and still does \
                 not match the manifest, so the copy on the server is damaged or belongs to another \
                 package. Re-create the package (bd3lm quantize) or upload it again."
            ),
            PageError::Package(err) => write!(f, "This is not a usable package: {err}"),
            PageError::Input(err) => write!(f, "Cannot start: {err}"),
            PageError::Engine(err) => write!(f, "The engine failed: {err}"),
            PageError::DeviceLost(message) => write!(
                f,
                "The GPU device was lost ({message}). Your text is kept; restart the engine to continue."
            ),
            PageError::Browser(message) => write!(f, "The browser reported an error: {message}"),
            PageError::Hub(err) => write!(f, "{err}"),
            PageError::Quota(why) => write!(f, "Not enough storage for this model: {why}"),
        }
    }
}

impl std::error::Error for PageError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_is_explained_only_for_another_site() {
        let other = PageError::Unreachable {
            url: "https://cdn.example/pkg/manifest.json".into(),
            other_site: Some("https://cdn.example".into()),
            detail: "TypeError: Failed to fetch".into(),
        };
        assert!(other.to_string().contains("Access-Control-Allow-Origin"));
        let same = PageError::Unreachable {
            url: "model/manifest.json".into(),
            other_site: None,
            detail: "x".into(),
        };
        assert!(!same.to_string().contains("CORS"));
        assert!(same.to_string().contains("offline"));
    }

    #[test]
    fn bad_file_names_the_file_and_device_loss_is_kept_apart() {
        let bad = PageError::BadFile {
            file: "weights-00001.safetensors".into(),
            url: "u".into(),
            reason: "SHA-256 mismatch".into(),
        };
        assert!(bad
            .to_string()
            .starts_with("weights-00001.safetensors is corrupt"));
        assert!(PageError::from_engine(bd3lm::Error::DeviceLost("reset".into())).is_device_lost());
        assert!(!PageError::from_engine(bd3lm::Error::Backend("x".into())).is_device_lost());
    }
}
