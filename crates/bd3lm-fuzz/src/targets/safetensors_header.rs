//! `HfFile::open` and `read_f32` on bytes: the 8-byte header length checked against the file
//! length, the JSON header parsed, then every tensor checked as f32 and decoded.
//!
//! Input: the file's length as a little-endian `u64` (a header may claim more data than the
//! input holds, as a 100 GB file's header would), then the file's first bytes.

use bd3lm::hf_file::{f32_values, SafetensorsHeader};

pub fn run(data: &[u8]) {
    let Some((claimed_len, file)) = data.split_first_chunk::<8>() else {
        return;
    };
    let file_len = u64::from_le_bytes(*claimed_len).max(file.len() as u64);
    let Ok(header_len) = SafetensorsHeader::header_len("f", file, file_len) else {
        return;
    };
    // `HfFile::open` reads exactly this much after the check; here it must be in the input.
    let Some(header) = file
        .get(8..)
        .and_then(|rest| rest.get(..header_len as usize))
    else {
        return;
    };
    let Ok(parsed) = SafetensorsHeader::parse("f", header, file_len) else {
        return;
    };
    assert_eq!(parsed.data_start, 8 + header_len);
    let mut names: Vec<&String> = parsed.tensors.keys().collect();
    names.sort();
    for name in names {
        let info = &parsed.tensors[name];
        assert!(info.start <= info.end && parsed.data_start + info.end <= file_len);
        let Ok((info, dtype)) = parsed.tensor("f", name, &info.shape) else {
            continue;
        };
        let (start, end) = (parsed.data_start + info.start, parsed.data_start + info.end);
        if let Some(bytes) = file.get(start as usize..end as usize) {
            let values = dtype.decode(bytes);
            assert_eq!(values.len() * dtype.size(), bytes.len());
            assert_eq!(f32_values(bytes).len(), bytes.len() / 4);
        }
    }
    let _ = parsed.check("f", &crate::targets::hf_checkpoint::tiny_config());
}
