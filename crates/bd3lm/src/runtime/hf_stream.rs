//! A safetensors file read front to back as its bytes arrive (a download, or a file read in
//! order), without ever holding it whole: the 8-byte length and the JSON header are collected
//! and parsed with [`SafetensorsHeader`], then every byte of the data section is handed on as
//! a slice of the tensor it belongs to, in file order.
//!
//! Everything here is untrusted input. The file length is given up front (from the Hub's file
//! list or the file system) and every claim of the header is checked against it before any
//! buffer is sized from it; tensors may not overlap, and the stream may not run past the
//! length it announced.

use crate::error::{Error, Result};
use crate::hf_file::{SafetensorsHeader, TensorInfo};

/// What the stream found in the bytes pushed so far.
#[derive(Debug)]
pub enum StreamEvent<'a> {
    /// The header parsed; tensors follow in file order (their byte offsets).
    Header(&'a SafetensorsHeader),
    /// The next bytes of tensor `name`, starting `offset` bytes into it. A tensor's bytes
    /// arrive in order and in full before the next tensor's.
    TensorBytes {
        name: &'a str,
        info: &'a TensorInfo,
        offset: u64,
        bytes: &'a [u8],
    },
}

enum Phase {
    /// Collecting the 8-byte header length.
    Length(Vec<u8>),
    /// Collecting the JSON header of the given length.
    Header { len: u64, bytes: Vec<u8> },
    /// In the data section: `order` holds the tensors by offset, `next` the first one that
    /// has not been delivered completely.
    Data {
        header: Box<SafetensorsHeader>,
        order: Vec<(String, TensorInfo)>,
        next: usize,
    },
}

/// A push parser of one safetensors file of a known length.
pub struct SafetensorsStream {
    file: String,
    len: u64,
    /// Bytes of the file consumed so far.
    position: u64,
    phase: Phase,
}

fn bad(file: &str, message: String) -> Error {
    Error::Safetensors {
        file: file.to_string(),
        message,
    }
}

impl SafetensorsStream {
    /// A stream over a file of `len` bytes, named `file` in errors.
    pub fn new(file: &str, len: u64) -> SafetensorsStream {
        SafetensorsStream {
            file: file.to_string(),
            len,
            position: 0,
            phase: Phase::Length(Vec::with_capacity(8)),
        }
    }

    /// Bytes consumed so far (where a resumed download must continue).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The file length the stream was promised.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The parsed header, once it arrived.
    pub fn header(&self) -> Option<&SafetensorsHeader> {
        match &self.phase {
            Phase::Data { header, .. } => Some(header),
            _ => None,
        }
    }

    /// Consumes the next bytes of the file, calling `on` for the header and for each slice of
    /// tensor data. An error from `on` stops the stream and is returned.
    pub fn push(
        &mut self,
        mut chunk: &[u8],
        on: &mut dyn FnMut(StreamEvent<'_>) -> Result<()>,
    ) -> Result<()> {
        if chunk.len() as u64 > self.len - self.position {
            return Err(bad(
                &self.file,
                format!(
                    "more bytes arrived than the {} the file was said to have",
                    self.len
                ),
            ));
        }
        while !chunk.is_empty() {
            let used = self.step(chunk, on)?;
            self.position += used as u64;
            chunk = &chunk[used..];
        }
        Ok(())
    }

    /// Handles the start of `chunk`; returns how many bytes it used (at least one).
    fn step(
        &mut self,
        chunk: &[u8],
        on: &mut dyn FnMut(StreamEvent<'_>) -> Result<()>,
    ) -> Result<usize> {
        match &mut self.phase {
            Phase::Length(first8) => {
                let take = (8 - first8.len()).min(chunk.len());
                first8.extend_from_slice(&chunk[..take]);
                if first8.len() == 8 {
                    let len = SafetensorsHeader::header_len(&self.file, first8, self.len)?;
                    // Bounded by the file length and MAX_HEADER_BYTES (checked just now).
                    self.phase = Phase::Header {
                        len,
                        bytes: Vec::with_capacity(len as usize),
                    };
                    if len == 0 {
                        self.parse_header(on)?;
                    }
                }
                Ok(take)
            }
            Phase::Header { len, bytes } => {
                let take = ((*len as usize) - bytes.len()).min(chunk.len());
                bytes.extend_from_slice(&chunk[..take]);
                if bytes.len() as u64 == *len {
                    self.parse_header(on)?;
                }
                Ok(take)
            }
            Phase::Data {
                header,
                order,
                next,
            } => {
                let at = self.position - header.data_start;
                // Skip tensors that are complete (or empty) at this offset.
                while *next < order.len() && order[*next].1.end <= at {
                    *next += 1;
                }
                let Some((name, info)) = order.get(*next) else {
                    // Bytes after the last tensor (padding): nothing to deliver.
                    return Ok(chunk.len());
                };
                if at < info.start {
                    // A gap before the next tensor.
                    return Ok(((info.start - at) as usize).min(chunk.len()));
                }
                let take = ((info.end - at) as usize).min(chunk.len());
                on(StreamEvent::TensorBytes {
                    name,
                    info,
                    offset: at - info.start,
                    bytes: &chunk[..take],
                })?;
                Ok(take)
            }
        }
    }

    fn parse_header(&mut self, on: &mut dyn FnMut(StreamEvent<'_>) -> Result<()>) -> Result<()> {
        let Phase::Header { bytes, .. } = &self.phase else {
            return Ok(());
        };
        let header = SafetensorsHeader::parse(&self.file, bytes, self.len)?;
        let mut order: Vec<(String, TensorInfo)> = header
            .in_file_order()
            .into_iter()
            .map(|(name, info)| (name.to_string(), info.clone()))
            .collect();
        for pair in order.windows(2) {
            let ((a, ai), (b, bi)) = (&pair[0], &pair[1]);
            if bi.start < ai.end {
                return Err(bad(
                    &self.file,
                    format!("tensors `{a}` and `{b}` overlap in the file"),
                ));
            }
        }
        order.retain(|(_, info)| info.end > info.start);
        on(StreamEvent::Header(&header))?;
        self.phase = Phase::Data {
            header: Box::new(header),
            order,
            next: 0,
        };
        Ok(())
    }

    /// Checks that the whole file arrived.
    pub fn finish(&self) -> Result<()> {
        if self.position != self.len || self.header().is_none() {
            return Err(bad(
                &self.file,
                format!(
                    "the stream ended after {} of {} bytes (truncated?)",
                    self.position, self.len
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A safetensors file with the given tensors (u8 payloads, shape = byte count).
    fn file(tensors: &[(&str, &[u8])]) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        let mut data = Vec::new();
        for (name, bytes) in tensors {
            let start = data.len();
            data.extend_from_slice(bytes);
            header.insert(
                name.to_string(),
                serde_json::json!({"dtype": "U8", "shape": [bytes.len()], "data_offsets": [start, data.len()]}),
            );
        }
        let json = serde_json::to_vec(&header).unwrap();
        let mut out = (json.len() as u64).to_le_bytes().to_vec();
        out.extend(json);
        out.extend(data);
        out
    }

    /// Pushes `bytes` in chunks of `chunk` and collects every tensor's bytes.
    fn collect(bytes: &[u8], chunk: usize) -> Result<BTreeMap<String, Vec<u8>>> {
        let mut stream = SafetensorsStream::new("t", bytes.len() as u64);
        let mut got: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut headers = 0;
        for part in bytes.chunks(chunk.max(1)) {
            stream.push(part, &mut |event| {
                match event {
                    StreamEvent::Header(_) => headers += 1,
                    StreamEvent::TensorBytes {
                        name,
                        offset,
                        bytes,
                        ..
                    } => {
                        let v = got.entry(name.to_string()).or_default();
                        assert_eq!(v.len() as u64, offset, "bytes arrive in order");
                        v.extend_from_slice(bytes);
                    }
                }
                Ok(())
            })?;
        }
        stream.finish()?;
        assert_eq!(headers, 1);
        Ok(got)
    }

    #[test]
    fn every_chunking_delivers_the_same_tensors() {
        let a: Vec<u8> = (0..100).collect();
        let b: Vec<u8> = (0..37).map(|i| i * 3).collect();
        let bytes = file(&[("a", &a), ("empty", &[]), ("b", &b)]);
        for chunk in [1, 2, 7, 8, 9, 64, 1000, bytes.len()] {
            let got = collect(&bytes, chunk).expect("valid file");
            assert_eq!(got.get("a"), Some(&a), "chunk {chunk}");
            assert_eq!(got.get("b"), Some(&b), "chunk {chunk}");
            assert!(!got.contains_key("empty"));
        }
    }

    #[test]
    fn truncation_overrun_and_overlap_are_errors() {
        let a = [1u8; 40];
        let bytes = file(&[("a", &a)]);
        // Truncated: finish() says so.
        let mut stream = SafetensorsStream::new("t", bytes.len() as u64);
        stream
            .push(&bytes[..bytes.len() - 1], &mut |_| Ok(()))
            .expect("prefix is fine");
        assert!(stream
            .finish()
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        // More bytes than announced.
        let mut stream = SafetensorsStream::new("t", 10);
        assert!(stream.push(&bytes, &mut |_| Ok(())).is_err());
        // A header claiming more than the announced length fails before buffering it.
        let mut huge = (1u64 << 40).to_le_bytes().to_vec();
        huge.extend([0u8; 16]);
        let mut stream = SafetensorsStream::new("t", huge.len() as u64);
        assert!(stream.push(&huge, &mut |_| Ok(())).is_err());
        // Overlapping tensors.
        let json = br#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}"#;
        let mut over = (json.len() as u64).to_le_bytes().to_vec();
        over.extend_from_slice(json);
        over.extend([0u8; 6]);
        let err = collect(&over, 3).unwrap_err();
        assert!(err.to_string().contains("overlap"), "{err}");
    }

    #[test]
    fn an_error_from_the_consumer_stops_the_stream() {
        let bytes = file(&[("a", &[1, 2, 3])]);
        let mut stream = SafetensorsStream::new("t", bytes.len() as u64);
        let err = stream
            .push(&bytes, &mut |e| match e {
                StreamEvent::Header(_) => Err(Error::package("t", "not wanted")),
                _ => Ok(()),
            })
            .unwrap_err();
        assert!(err.to_string().contains("not wanted"));
    }
}
