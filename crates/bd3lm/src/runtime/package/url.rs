//! Where a package lives (used by the page, in the core crate so a fuzz target reaches it). A
//! page accepts the directory URL with or without a trailing slash, or the manifest's URL.
//! Relative URLs resolve against the page, so the embedded package works under any base path.

/// The page's own package, copied next to `index.html` by Trunk (`web/index.html`,
/// `copy-dir ... data-target-path`). The one place the page names its default package.
pub const DEFAULT_PACKAGE_URL: &str = "model/";

pub const MANIFEST_FILE: &str = "manifest.json";

/// `"https://x/pkg"`, `"https://x/pkg/"` and `"https://x/pkg/manifest.json"` all become
/// `"https://x/pkg/"`; an empty field means the default package.
pub fn normalize_package_url(input: &str) -> String {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return DEFAULT_PACKAGE_URL.to_string();
    }
    let without_query = trimmed.split(['?', '#']).next().unwrap_or(trimmed);
    let dir = without_query
        .strip_suffix(MANIFEST_FILE)
        .unwrap_or(without_query);
    if dir.is_empty() {
        "./".to_string()
    } else if dir.ends_with('/') {
        dir.to_string()
    } else {
        format!("{dir}/")
    }
}

/// The URL of `file` inside a package directory URL (which ends in `/`).
pub fn file_url(package_dir: &str, file: &str) -> String {
    format!("{package_dir}{file}")
}

/// `scheme://host[:port]` of an absolute URL, lower-cased, or `None` for anything else.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if scheme.is_empty() || host.is_empty() {
        return None;
    }
    Some(format!(
        "{}://{}",
        scheme.to_ascii_lowercase(),
        host.to_ascii_lowercase()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_package_becomes_its_directory() {
        assert_eq!(normalize_package_url(""), DEFAULT_PACKAGE_URL);
        assert_eq!(
            normalize_package_url("  https://h.org/pkg  "),
            "https://h.org/pkg/"
        );
        assert_eq!(
            normalize_package_url("https://h.org/pkg/"),
            "https://h.org/pkg/"
        );
        assert_eq!(
            normalize_package_url("https://h.org/pkg/manifest.json"),
            "https://h.org/pkg/"
        );
        assert_eq!(
            normalize_package_url("https://h.org/pkg/manifest.json?v=2"),
            "https://h.org/pkg/"
        );
        assert_eq!(normalize_package_url("model"), "model/");
        assert_eq!(normalize_package_url("manifest.json"), "./");
    }

    #[test]
    fn file_urls_and_origins() {
        assert_eq!(
            file_url("https://h.org/pkg/", "weights-00000.safetensors"),
            "https://h.org/pkg/weights-00000.safetensors"
        );
        assert_eq!(
            origin_of("https://H.org:8443/a/b?c"),
            Some("https://h.org:8443".to_string())
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8080/"),
            Some("http://127.0.0.1:8080".to_string())
        );
        assert_eq!(origin_of("model/"), None);
    }
}
