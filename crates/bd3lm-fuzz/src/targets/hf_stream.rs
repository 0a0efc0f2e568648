//! A checkpoint read front to back as its bytes arrive (`hf_stream::SafetensorsStream`, the
//! page's Hub download): the input is the file, pushed in chunks whose sizes come from its
//! first two bytes, against a length that may be the truth or a lie.

use bd3lm::hf_stream::{SafetensorsStream, StreamEvent};

pub fn run(data: &[u8]) {
    let Some(([lie, chunk], file)) = data.split_first_chunk::<2>() else {
        return;
    };
    // The announced length: the real one, or off by a little in either direction.
    let len = (file.len() as u64).saturating_add_signed(i64::from(*lie as i8) / 32);
    let chunk = usize::from(*chunk).max(1);
    let mut stream = SafetensorsStream::new("f", len);
    let mut seen = 0u64;
    let mut on = |event: StreamEvent<'_>| {
        if let StreamEvent::TensorBytes {
            info,
            offset,
            bytes,
            ..
        } = event
        {
            assert!(offset + bytes.len() as u64 <= info.end - info.start);
            seen += bytes.len() as u64;
        }
        Ok(())
    };
    for part in file.chunks(chunk) {
        if stream.push(part, &mut on).is_err() {
            return;
        }
    }
    if stream.finish().is_ok() {
        assert_eq!(stream.position(), len);
        assert!(seen <= len);
    }
}
