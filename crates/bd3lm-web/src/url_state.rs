//! The page's shareable state in its URL: model, prompt, seed, sampler and the sampler's
//! settings as query parameters, so a link reproduces a text on the same engine. Other
//! parameters (`engine`, `hub`, `format`, `fault`, ...) are left as they are. Pure logic,
//! tested natively.

use crate::settings::{FormValues, CONFIDENCE, ENTROPY, POSTERIOR};
use bd3lm::package::url::DEFAULT_PACKAGE_URL;

/// Every query parameter this module owns (written or removed when the state is written).
pub const KEYS: [&str; 10] = [
    "model",
    "prompt",
    "tokens",
    "sampler",
    "steps",
    "threshold",
    "gamma",
    "top_p",
    "seed",
    "pace",
];

/// The form, prompt and model named by a URL's parameters (`get` reads one), over defaults.
/// A URL with a seed turns the random seed off, so the link repeats its text.
pub fn read(get: impl Fn(&str) -> Option<String>) -> (FormValues, Option<String>, Option<String>) {
    let mut form = FormValues::default();
    let fields: [(&str, &mut String); 7] = [
        ("tokens", &mut form.tokens),
        ("sampler", &mut form.sampler),
        ("steps", &mut form.steps),
        ("threshold", &mut form.threshold),
        ("gamma", &mut form.gamma),
        ("top_p", &mut form.top_p),
        ("pace", &mut form.pace_ms),
    ];
    for (key, field) in fields {
        if let Some(value) = get(key) {
            *field = value;
        }
    }
    if let Some(seed) = get("seed") {
        form.seed = seed;
        form.random_seed = false;
    }
    (form, get("prompt"), get("model"))
}

/// The parameters that describe a run: `seed` is the seed actually used. The demo model is
/// the default and is left out, as are the settings of samplers not chosen.
pub fn pairs(
    model: &str,
    prompt: &str,
    form: &FormValues,
    seed: u64,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if model.trim() != DEFAULT_PACKAGE_URL {
        out.push(("model", model.trim().to_string()));
    }
    out.push(("prompt", prompt.to_string()));
    out.push(("tokens", form.tokens.trim().to_string()));
    out.push(("sampler", form.sampler.clone()));
    match form.sampler.as_str() {
        POSTERIOR => out.push(("steps", form.steps.trim().to_string())),
        CONFIDENCE => out.push(("threshold", form.threshold.trim().to_string())),
        ENTROPY => out.push(("gamma", form.gamma.trim().to_string())),
        _ => {}
    }
    out.push(("top_p", form.top_p.trim().to_string()));
    out.push(("seed", seed.to_string()));
    out.push(("pace", form.pace_ms.trim().to_string()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn written_state_reads_back_with_the_seed_fixed() {
        let form = FormValues {
            sampler: CONFIDENCE.into(),
            threshold: "0.25".into(),
            tokens: "64".into(),
            ..FormValues::default()
        };
        let written = pairs("org/model@v1", "Hello there,", &form, 4242);
        assert!(written.iter().all(|(k, _)| KEYS.contains(k)));
        assert!(!written.iter().any(|(k, _)| *k == "steps" || *k == "gamma"));
        let map: HashMap<&str, String> = written.into_iter().collect();
        let (read_form, prompt, model) = read(|k| map.get(k).cloned());
        assert_eq!(prompt.as_deref(), Some("Hello there,"));
        assert_eq!(model.as_deref(), Some("org/model@v1"));
        assert_eq!(read_form.seed, "4242");
        assert!(!read_form.random_seed);
        assert_eq!(read_form.sampler, CONFIDENCE);
        assert_eq!(read_form.threshold, "0.25");
        assert_eq!(read_form.tokens, "64");
    }

    #[test]
    fn the_demo_model_and_an_empty_url_stay_default() {
        let written = pairs(DEFAULT_PACKAGE_URL, "x", &FormValues::default(), 1);
        assert!(!written.iter().any(|(k, _)| *k == "model"));
        let (form, prompt, model) = read(|_| None);
        assert_eq!(form, FormValues::default());
        assert!(form.random_seed);
        assert_eq!((prompt, model), (None, None));
    }
}
