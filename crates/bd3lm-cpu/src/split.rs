//! Each weight matrix split by outputs across parties (the page's CPU engine on several Web
//! Workers, `worker_split`): party `p` of `n` holds only outputs [`part_range`] of every
//! projection and of the LM head, and computes them whole, with the same kernels in the same
//! order as one engine would, so the results are bit-identical for every party count.
//!
//! Party 0 runs the engine (embedding, norms, attention, KV cache, sampling: everything but
//! the other parties' outputs); at each split matmul it hands the activations to the others
//! through a [`SplitMatmul`] hook, computes its own outputs meanwhile and then gathers theirs.

use crate::shard_part::Keep;
use bd3lm::package::TensorPiece;
use bd3lm::quant::Matrix;
use bd3lm::{Config, Error, Result};
use std::ops::Range;

/// Parts start on a multiple of this many outputs, so each part's kernels run whole groups of
/// outputs (the result does not depend on it; speed does).
pub const PART_ALIGN: usize = 16;

/// Most parties a model can be split across: every part of the smallest split matrix
/// (`attn_out`, `hidden_dim` outputs) keeps at least [`PART_ALIGN`] outputs.
pub fn max_parts(cfg: &Config) -> usize {
    (cfg.hidden_dim / PART_ALIGN).max(1)
}

/// Outputs `[start, end)` of an `outputs`-output matrix that part `part` of `parts` computes.
/// Non-empty for every part while `parts <= outputs / PART_ALIGN` ([`max_parts`]).
pub fn part_range(outputs: usize, part: usize, parts: usize) -> Range<usize> {
    let edge = |p: usize| {
        if p >= parts {
            outputs
        } else {
            (outputs * p / parts) / PART_ALIGN * PART_ALIGN
        }
    };
    edge(part)..edge(part + 1)
}

/// The package names of the split matrices, in the order of their index: each layer's
/// `qkv`, `attn_out`, `mlp_in`, `mlp_out`, then the LM head. The embedding is not split
/// (party 0 looks rows up in it).
pub fn split_matrix_names(cfg: &Config) -> Vec<String> {
    let mut names = Vec::with_capacity(4 * cfg.n_layers + 1);
    for l in 0..cfg.n_layers {
        for m in ["qkv", "attn_out", "mlp_in.weight", "mlp_out.weight"] {
            names.push(format!("layers.{l}.{m}"));
        }
    }
    names.push("lm_head.weight".to_string());
    names
}

/// Outputs of each whole split matrix, in index order.
pub fn split_outputs(cfg: &Config) -> Vec<usize> {
    let h = cfg.hidden_dim;
    let mut outputs: Vec<usize> = (0..cfg.n_layers)
        .flat_map(|_| [3 * h, h, 4 * h, h])
        .collect();
    outputs.push(cfg.vocab_size);
    outputs
}

/// One party's slices of every split matrix, collected piece by piece as shards arrive.
pub struct PartSlices {
    part: usize,
    parts: usize,
    names: Vec<String>,
    outputs: Vec<usize>,
    pieces: Vec<Vec<(usize, Matrix)>>,
}

impl PartSlices {
    pub fn new(cfg: &Config, part: usize, parts: usize) -> PartSlices {
        let names = split_matrix_names(cfg);
        PartSlices {
            part,
            parts,
            pieces: vec![Vec::new(); names.len()],
            names,
            outputs: split_outputs(cfg),
        }
    }

    /// The split matrix `name`'s index, if it is one.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// This party's outputs of split matrix `index`.
    pub fn range(&self, index: usize) -> Range<usize> {
        part_range(self.outputs[index], self.part, self.parts)
    }

    /// What this party keeps of tensor `name`: its rows of a split matrix; everything else
    /// when it is party 0 (it runs the engine), nothing otherwise.
    pub fn keep(&self, name: &str) -> Keep {
        match self.index_of(name) {
            Some(index) => Keep::Rows(self.range(index)),
            None if self.part == 0 => Keep::Whole,
            None => Keep::Nothing,
        }
    }

    /// Collects a piece of this party's slice of a split matrix (as [`crate::shard_part`]
    /// reads it, rows numbered from the slice's start); ignores any other tensor.
    pub fn add(&mut self, name: &str, piece: TensorPiece) {
        if let (
            Some(index),
            TensorPiece::Rows {
                start_row, matrix, ..
            },
        ) = (self.index_of(name), piece)
        {
            self.pieces[index].push((start_row, matrix));
        }
    }

    /// Every slice, whole, by index, with its first output in the whole matrix.
    pub fn finish(self) -> Result<Vec<(usize, Matrix)>> {
        let ranges: Vec<Range<usize>> = (0..self.names.len()).map(|i| self.range(i)).collect();
        let mut out = Vec::with_capacity(self.names.len());
        for ((name, mut pieces), range) in self.names.into_iter().zip(self.pieces).zip(ranges) {
            pieces.sort_by_key(|(start, _)| *start);
            let missing = || Error::package("manifest.json", format!("`{name}`: rows missing"));
            let mut iter = pieces.into_iter();
            let (_, mut whole) = iter.next().ok_or_else(missing)?;
            for (_, next) in iter {
                whole.rows += next.rows;
                whole.data.append(next.data).map_err(|_| {
                    Error::package("manifest.json", format!("`{name}`: mixed schemes"))
                })?;
            }
            if whole.rows != range.len() {
                return Err(missing());
            }
            out.push((range.start, whole));
        }
        Ok(out)
    }
}

/// Where a split matrix's local slice sits in the whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitMatrix {
    /// Index in [`split_matrix_names`] order.
    pub index: usize,
    /// Outputs of the whole matrix (the row length of the matmul's output).
    pub outputs: usize,
    /// First output of the local slice.
    pub local_start: usize,
}

#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSendSync: Send + Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + Sync> MaybeSendSync for T {}
/// On wasm32 the engine has one thread, and the hook holds JavaScript values.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSendSync {}
#[cfg(target_arch = "wasm32")]
impl<T> MaybeSendSync for T {}

/// The other parties of a split engine, as party 0's matmul sees them.
pub trait SplitMatmul: MaybeSendSync {
    /// Where `w` (a matrix of party 0's weights) sits in its whole; `None`: not split.
    fn locate(&self, w: &Matrix) -> Option<SplitMatrix>;
    /// Hands `x` (`[rows, k]`) to the other parties, which start on their outputs.
    fn start(&self, m: SplitMatrix, x: &[f32], rows: usize);
    /// Waits for the other parties and writes their outputs into `out` (`[rows, outputs]`). A
    /// party that fails leaves zeros; the hook's owner reports the failure after the call
    /// (the forward pass itself has no error path).
    fn finish(&self, m: SplitMatrix, rows: usize, out: &mut [f32]);
}

/// The split matrices of party 0's weights, by address (the hook recognises a matmul's
/// matrix by where it lives: weights behind an `Arc` never move).
pub fn matrix_addresses(w: &bd3lm::Weights) -> Vec<usize> {
    let mut addresses: Vec<usize> = w
        .layers
        .iter()
        .flat_map(|l| l.matrices().map(|(_, m)| m as *const Matrix as usize))
        .collect();
    addresses.push(&w.lm_head as *const Matrix as usize);
    addresses
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_outputs_without_gaps() {
        for (n, parts) in [(768, 2), (2304, 3), (50_258, 8), (64, 4), (64, 1)] {
            let mut next = 0;
            for p in 0..parts {
                let r = part_range(n, p, parts);
                assert_eq!(r.start, next, "{n} outputs, part {p} of {parts}");
                assert!(!r.is_empty() && r.start.is_multiple_of(PART_ALIGN));
                next = r.end;
            }
            assert_eq!(next, n);
        }
    }
}
