//! The model menu and the words around a Hub load: which entries the menu offers, whether
//! what was typed is a package URL or a Hub id, what a load will cost, and whether the
//! browser's storage can take it. Pure logic, tested natively.

use crate::format;
use bd3lm::hub::{HubId, RELEASED_MODELS};
use bd3lm::package::url::DEFAULT_PACKAGE_URL;
use bd3lm::quant::Scheme;

/// What the model field holds.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelInput {
    /// A package folder (or its manifest.json), relative to the page or absolute.
    Package(String),
    /// A Hugging Face Hub id, converted in the browser.
    Hub(HubId),
}

/// `owner/name[@rev]` is a Hub id; anything with a scheme, a leading `.` or `/`, a trailing
/// `/` or a `.json` file name is a package URL (write `./dir/name` for a relative folder
/// that would otherwise read as an id).
pub fn classify(input: &str) -> ModelInput {
    let text = input.trim();
    let url_like = text.contains("://")
        || text.starts_with(['.', '/'])
        || text.ends_with('/')
        || text.ends_with(".json");
    if !url_like {
        if let Ok(id) = HubId::parse(text) {
            return ModelInput::Hub(id);
        }
    }
    ModelInput::Package(text.to_string())
}

/// The menu value of the free-text entry.
pub const CUSTOM: &str = "custom";

/// The menu: (value put in the model field, label).
pub fn menu() -> Vec<(String, String)> {
    let mut entries = vec![(
        DEFAULT_PACKAGE_URL.to_string(),
        "Demo model (ships with the page, 5.8 MB)".to_string(),
    )];
    for id in RELEASED_MODELS {
        let block = id.rsplit("block_size").next().unwrap_or("?");
        entries.push((
            id.to_string(),
            format!("BD3-LM OpenWebText, block size {block} (Hub)"),
        ));
    }
    entries.push((
        CUSTOM.to_string(),
        "Other: a package URL or a Hub id…".to_string(),
    ));
    entries
}

/// The menu entry showing for the field's text.
pub fn menu_value(input: &str) -> String {
    let text = input.trim();
    menu()
        .into_iter()
        .map(|(value, _)| value)
        .find(|value| value != CUSTOM && value == text)
        .unwrap_or_else(|| CUSTOM.to_string())
}

/// Most models one comparison runs (one after another, one in memory at a time).
pub const MAX_COMPARED: usize = 3;

/// The comparison field's default: the released block sizes 4, 8 and 16.
pub fn default_comparison() -> String {
    RELEASED_MODELS.join(", ")
}

/// The models named in the comparison field: separated by commas or white space, empty
/// entries dropped; `Err` says why it cannot run.
pub fn compare_sources(text: &str) -> Result<Vec<String>, String> {
    let sources: Vec<String> = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if !(2..=MAX_COMPARED).contains(&sources.len()) {
        return Err(format!(
            "Compare: name 2 to {MAX_COMPARED} models (package URLs or Hub ids), separated by commas; got {}.",
            sources.len()
        ));
    }
    Ok(sources)
}

/// Formats the page converts to (the same plans as `bd3lm quantize --format`).
pub const FORMATS: [Scheme; 3] = [Scheme::Q8, Scheme::Q4, Scheme::F16];

/// The format from `?format=` (q8 when absent or unknown).
pub fn parse_format(value: Option<&str>) -> Scheme {
    value
        .and_then(Scheme::parse)
        .filter(|s| FORMATS.contains(s))
        .unwrap_or(Scheme::Q8)
}

/// What a Hub load will do, before it starts: e.g. "680.4 MB downloaded once, kept as a
/// 175.0 MB q8 package in this browser."
pub fn statement(download_bytes: u64, stored_bytes: u64, format: Scheme, stored: bool) -> String {
    if stored {
        return format!(
            "The {} package ({}) is stored in this browser: loading needs no download and no conversion.",
            format.name(),
            format::bytes(stored_bytes)
        );
    }
    format!(
        "{} downloaded once, kept as a {} {} package in this browser.",
        format::bytes(download_bytes),
        format::bytes(stored_bytes),
        format.name()
    )
}

/// What loading a package the Hub repo itself holds will do: e.g. "174.0 MB q8 package
/// downloaded once (each file checked against its SHA-256), kept in this browser."
pub fn package_statement(package_bytes: u64, quantization: &str, to_download: u64) -> String {
    if to_download == 0 {
        return format!(
            "The {} {quantization} package is stored in this browser: loading needs no download.",
            format::bytes(package_bytes)
        );
    }
    let partly = if to_download < package_bytes {
        format!(" ({} of it still to download)", format::bytes(to_download))
    } else {
        String::new()
    };
    format!(
        "{} {quantization} package{partly} downloaded once from the Hub as it is (each file checked against its SHA-256, nothing converted), kept in this browser.",
        format::bytes(package_bytes)
    )
}

/// Storage a conversion needs: the package is written to a staging area first and moved
/// into place once the checkpoint's SHA-256 verified, so twice its size for a moment.
pub fn storage_needed(stored_bytes: u64) -> u64 {
    stored_bytes.saturating_mul(2)
}

/// Why the browser's storage cannot take a package (`None`: it can), from
/// `navigator.storage.estimate()`.
pub fn quota_problem(stored_bytes: u64, usage: u64, quota: u64) -> Option<String> {
    let needed = storage_needed(stored_bytes);
    let free = quota.saturating_sub(usage);
    (free < needed).then(|| {
        format!(
            "This browser lets the page store {} more ({} of {} used), but converting the model needs {} ({} for the package, as much again while it is checked). Free some space (site data of other pages) or use a smaller format.",
            format::bytes(free),
            format::bytes(usage),
            format::bytes(quota),
            format::bytes(needed),
            format::bytes(stored_bytes)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_urls_are_told_apart() {
        assert!(matches!(
            classify("kuleshov-group/bd3lm-owt-block_size16"),
            ModelInput::Hub(_)
        ));
        assert!(matches!(classify(" a/b@main "), ModelInput::Hub(_)));
        for url in [
            "model/",
            "full",
            "./pkgs/x",
            "pkgs/x/",
            "https://example.org/a/b",
            "a/manifest.json",
            "/abs/dir",
        ] {
            assert!(matches!(classify(url), ModelInput::Package(_)), "{url}");
        }
    }

    #[test]
    fn the_menu_has_the_demo_first_and_the_released_models() {
        let m = menu();
        assert_eq!(m[0].0, DEFAULT_PACKAGE_URL);
        assert_eq!(m.len(), 5);
        assert!(m[3].1.contains("block size 16"), "{:?}", m[3]);
        assert_eq!(menu_value("model/"), "model/");
        assert_eq!(
            menu_value("kuleshov-group/bd3lm-owt-block_size4"),
            "kuleshov-group/bd3lm-owt-block_size4"
        );
        assert_eq!(menu_value("someone/else"), CUSTOM);
        assert_eq!(parse_format(Some("q4")), Scheme::Q4);
        assert_eq!(parse_format(Some("f32")), Scheme::Q8);
        assert_eq!(parse_format(None), Scheme::Q8);
    }

    #[test]
    fn comparisons_name_two_or_three_models() {
        assert_eq!(
            compare_sources(" model/, /pkgs/bs8/ ").unwrap(),
            vec!["model/".to_string(), "/pkgs/bs8/".to_string()]
        );
        assert_eq!(compare_sources(&default_comparison()).unwrap().len(), 3);
        assert!(compare_sources("model/").unwrap_err().contains("got 1"));
        assert!(compare_sources("a/b, c/d, e/f, g/h").is_err());
    }

    #[test]
    fn the_statement_and_quota_are_in_words() {
        assert_eq!(
            statement(680_400_000, 175_000_000, Scheme::Q8, false),
            "680.4 MB downloaded once, kept as a 175.0 MB q8 package in this browser."
        );
        assert!(statement(1, 175_000_000, Scheme::Q8, true).contains("no download"));
        assert!(package_statement(174_000_000, "q8", 174_000_000)
            .starts_with("174.0 MB q8 package downloaded once"));
        assert!(package_statement(174_000_000, "q8", 4_000_000).contains("4.0 MB of it still"));
        assert!(package_statement(174_000_000, "q8", 0).contains("no download"));
        assert_eq!(quota_problem(175_000_000, 0, 1_000_000_000), None);
        let p = quota_problem(175_000_000, 100_000_000, 300_000_000).expect("too small");
        assert!(p.contains("200.0 MB more"), "{p}");
        assert!(p.contains("350.0 MB"), "{p}");
    }
}
