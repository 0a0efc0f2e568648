//! `Config::from_json_str` on an HF `config.json`, then what every loader asks of a config
//! before it reads any weight: sizes, the tensor lists, a JSON round trip.

use crate::input::text;
use bd3lm::checkpoint::hf_tensor_specs;
use bd3lm::package::expected_tensors;
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
    let specs = hf_tensor_specs(&cfg);
    assert!(specs.len() >= 10 * cfg.n_layers);
    assert!(expected_tensors(&cfg).len() >= 9 * cfg.n_layers);
    let again = Config::from_json_str(&cfg.to_json().to_string()).expect("to_json parses back");
    assert_eq!(again, cfg);
}
