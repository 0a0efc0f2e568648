//! `Config::from_json_str` on an HF `config.json`, then what every loader asks of a config
//! before it reads any weight: sizes, the tensor lists, a JSON round trip.

use crate::input::text;
use bd3lm::checkpoint::hf_tensors;
use bd3lm::package::package_tensors;
use bd3lm::weights::kv_cache_bytes;
use bd3lm::Config;

pub fn run(data: &[u8]) {
    let Some(json) = text(data) else {
        return;
    };
    let Ok(cfg) = Config::from_json_str(json) else {
        return;
    };
    assert!(cfg.mask_id() as usize + 1 == cfg.vocab_size);
    assert!(cfg.head_dim() >= 1 && cfg.mlp_dim() >= cfg.hidden_dim);
    let _ = cfg.parameter_count();
    let _ = kv_cache_bytes(&cfg);
    assert_eq!(hf_tensors(&cfg).count(), 10 * cfg.n_layers + 13);
    assert_eq!(package_tensors(&cfg).count(), 9 * cfg.n_layers + 7);
    let again = Config::from_json_str(&cfg.to_json().to_string()).expect("to_json parses back");
    assert_eq!(again, cfg);
}
