//! Cutting one fuzz input into the several files some loaders take.

/// Splits `data` into two parts: a little-endian `u32` length `n`, then `n` bytes (fewer if
/// the input is shorter), then the rest. The seeds are written with [`join`].
pub fn split(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<4>() else {
        return (data, &[]);
    };
    let n = (u32::from_le_bytes(*len) as usize).min(rest.len());
    rest.split_at(n)
}

/// The inverse of [`split`].
pub fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + a.len() + b.len());
    out.extend_from_slice(&(a.len() as u32).to_le_bytes());
    out.extend_from_slice(a);
    out.extend_from_slice(b);
    out
}

/// The bytes as text, or `None` (every JSON loader takes `&str`; the callers read files as
/// UTF-8 and report invalid UTF-8 before parsing).
pub fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}
