//! The Hub's JSON answers: `/api/models/{id}` (`hub::parse_model_info`) and
//! `/api/models/{id}/tree/{rev}` (`hub::parse_tree`), then what a load plans from them
//! (`LoadPlan::from_tree`, its byte counts) and the config check (`hub::check_config`).

use crate::input::{split, text};
use bd3lm::hub::{self, HubId, LoadPlan};

pub fn run(data: &[u8]) {
    let (info, tree) = split(data);
    let id = HubId::parse("kuleshov-group/bd3lm-owt-block_size16").expect("a valid id");
    if let Some(info) = text(info) {
        let _ = hub::parse_model_info("https://hub.test/api/models/a/b", info);
        let _ = hub::check_config(&id, info);
    }
    let Some(tree) = text(tree) else {
        return;
    };
    let Ok(entries) = hub::parse_tree("https://hub.test/api/models/a/b/tree/main", tree) else {
        return;
    };
    if let Ok(plan) = LoadPlan::from_tree(&id, &entries) {
        let _ = plan.download_bytes();
        assert!(
            plan.checkpoint_lfs().is_some(),
            "a plan's checkpoint is an LFS file"
        );
    }
}
