//! A Hub model id as typed on the command line or in the page (`owner/name[@revision]`,
//! `hub::HubId::parse`), then the URLs built from it: every accepted id prints back to
//! itself, and its URLs stay under the endpoint.

use crate::input::{split, text};
use bd3lm::hub::{self, HubId};

pub fn run(data: &[u8]) {
    let (id_bytes, endpoint_bytes) = split(data);
    let Some(input) = text(id_bytes) else {
        return;
    };
    let Ok(id) = HubId::parse(input) else {
        return;
    };
    let again = HubId::parse(&id.to_string()).expect("an accepted id prints back to itself");
    assert_eq!(again, id);
    let _ = id.is_pinned();
    let endpoint =
        hub::normalize_endpoint(text(endpoint_bytes).unwrap_or("https://huggingface.co"));
    for url in [
        hub::model_info_url(&endpoint, &id.repo(), id.revision()),
        hub::tree_url(&endpoint, &id.repo(), id.revision()),
        hub::resolve_url(&endpoint, &id.repo(), id.revision(), hub::CONFIG_FILE),
    ] {
        assert!(url.starts_with(&endpoint), "{url} under {endpoint}");
    }
}
