//! The golden-fixture readers: `fixture::read_golden` (a `golden.safetensors` of i64, f32
//! and f64 tensors) and `fixture::read_notes` (`notes.json`).
//!
//! Input: `input::split` into golden.safetensors, then notes.json.

use crate::input::split;
use bd3lm::fixture::{read_golden, read_notes};

pub fn run(data: &[u8]) {
    let (golden, notes) = split(data);
    if let Ok(tensors) = read_golden(golden) {
        for t in tensors.values() {
            let _ = t.as_f64().len();
        }
    }
    let _ = read_notes(&String::from_utf8_lossy(notes));
}
