//! LightGBM models in the text format written by `Booster.save_model` (`model.txt`, or
//! `model.bst` as KServe's lgbserver names it), evaluated the way LightGBM predicts from
//! raw feature values.
//!
//! LightGBM works in `f64`: features are read as doubles (values within ±1e-35 become
//! exactly zero), thresholds and leaf values are doubles, and scores are summed per class
//! iteration by iteration. This module does the same in the same order.

use super::error::{PredictError, Problem};
use super::{row_width, Library, TabularModel};

mod text;

/// Decision-type bits, as in LightGBM's `tree.h`.
const CATEGORICAL: u8 = 1;
const DEFAULT_LEFT: u8 = 2;
/// Missing-value handling, in bits 2–3 of the decision type.
const MISSING_ZERO: u8 = 1;
const MISSING_NAN: u8 = 2;
/// LightGBM's `kZeroThreshold` (a `float` literal, widened to double).
const ZERO_THRESHOLD: f64 = 1e-35_f32 as f64;

/// One split node, 24 bytes; see `xgboost::Node` for why nodes are structs.
#[derive(Debug, Clone, Copy)]
struct Node {
    /// The threshold, or for a categorical split the index into `cat_ranges`.
    threshold: f64,
    feature: u32,
    /// A child `c >= 0` is the split node `nodes[c]`; `c < 0` is the leaf `leaves[!c]`.
    left: i32,
    right: i32,
    decision: u8,
}

/// How raw scores become predictions, per the model's `objective=` line.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Transform {
    Identity,
    /// `regression sqrt`: the label was square-rooted for training.
    SignedSquare,
    Sigmoid(f64),
    Exp,
    Softmax,
    /// One sigmoid per class (`multiclassova`).
    SigmoidEach(f64),
    Log1pExp,
}

/// A loaded LightGBM tree ensemble.
#[derive(Debug)]
pub struct LightgbmModel {
    nodes: Vec<Node>,
    leaves: Vec<f64>,
    /// Each tree's root, in child encoding (a one-leaf tree's root is a leaf).
    roots: Vec<i32>,
    /// Words of the categorical bitsets, and each categorical split's `(start, len)`.
    cat_words: Vec<u32>,
    cat_ranges: Vec<(u32, u32)>,
    n_features: usize,
    /// Trees per iteration: one per class for multi-class models, else one.
    n_groups: usize,
    /// `boosting=rf`: the scores are averaged over iterations, not summed.
    average_output: bool,
    transform: Transform,
    objective: String,
}

impl LightgbmModel {
    /// Parses a model in LightGBM's text format.
    pub(crate) fn from_text(text: &str) -> Result<Self, Problem> {
        text::parse(text)
    }

    /// Raw scores, `n_rows × n_groups`: summed, never averaged (as `raw_score=True`).
    fn margins(&self, rows: &[f64], n_rows: usize) -> Result<Vec<f64>, PredictError> {
        let width = row_width(rows.len(), n_rows, self.n_features)?;
        let groups = self.n_groups;
        let mut out = vec![0.0; n_rows * groups];
        // Columns past `width` stay NaN: missing.
        let mut x = vec![f64::NAN; self.n_features];
        for (r, acc) in out.chunks_exact_mut(groups).enumerate() {
            let row = &rows[r * width..(r + 1) * width];
            for (dst, &src) in x.iter_mut().zip(row) {
                *dst = if src.abs() <= ZERO_THRESHOLD {
                    0.0
                } else {
                    src
                };
            }
            for (i, &root) in self.roots.iter().enumerate() {
                acc[i % groups] += self.leaf(root, &x);
            }
        }
        Ok(out)
    }

    /// Walks one tree. Loading checked every index and that each tree is acyclic.
    #[inline]
    fn leaf(&self, root: i32, x: &[f64]) -> f64 {
        let mut next = root;
        while next >= 0 {
            let node = &self.nodes[next as usize];
            let fvalue = x[node.feature as usize];
            next = if node.decision & CATEGORICAL != 0 {
                self.categorical(node, fvalue)
            } else {
                numerical(node, fvalue)
            };
        }
        self.leaves[!next as usize]
    }

    fn categorical(&self, node: &Node, fvalue: f64) -> i32 {
        // LightGBM truncates toward zero; NaN and negative categories go right.
        if fvalue.is_nan() || fvalue <= -1.0 {
            return node.right;
        }
        let category = fvalue as u32; // saturates for huge values: not in any set
        let (start, len) = self.cat_ranges[node.threshold as usize];
        let word = (category / 32) as usize;
        let in_set = word < len as usize
            && (self.cat_words[start as usize + word] >> (category % 32)) & 1 == 1;
        if in_set {
            node.left
        } else {
            node.right
        }
    }
}

fn numerical(node: &Node, mut fvalue: f64) -> i32 {
    let missing = (node.decision >> 2) & 3;
    if fvalue.is_nan() && missing != MISSING_NAN {
        fvalue = 0.0;
    }
    let is_missing = match missing {
        MISSING_ZERO => (-ZERO_THRESHOLD..=ZERO_THRESHOLD).contains(&fvalue),
        MISSING_NAN => fvalue.is_nan(),
        _ => false,
    };
    if is_missing {
        if node.decision & DEFAULT_LEFT != 0 {
            node.left
        } else {
            node.right
        }
    } else if fvalue <= node.threshold {
        node.left
    } else {
        node.right
    }
}

fn sigmoid(scale: f64, x: f64) -> f64 {
    1.0 / (1.0 + (-scale * x).exp())
}

impl TabularModel for LightgbmModel {
    fn library(&self) -> Library {
        Library::Lightgbm
    }

    fn objective(&self) -> &str {
        &self.objective
    }

    fn n_features(&self) -> usize {
        self.n_features
    }

    fn n_outputs(&self) -> usize {
        self.n_groups
    }

    fn n_margins(&self) -> usize {
        self.n_groups
    }

    fn predict(&self, rows: &[f64], n_rows: usize) -> Result<Vec<f64>, PredictError> {
        let mut out = self.margins(rows, n_rows)?;
        if self.average_output {
            let iterations = (self.roots.len() / self.n_groups).max(1) as f64;
            out.iter_mut().for_each(|v| *v /= iterations);
        }
        match self.transform {
            Transform::Identity => {}
            Transform::SignedSquare => out.iter_mut().for_each(|v| *v = v.signum() * *v * *v),
            Transform::Sigmoid(s) | Transform::SigmoidEach(s) => {
                out.iter_mut().for_each(|v| *v = sigmoid(s, *v))
            }
            Transform::Exp => out.iter_mut().for_each(|v| *v = v.exp()),
            Transform::Log1pExp => out.iter_mut().for_each(|v| *v = v.exp().ln_1p()),
            Transform::Softmax => {
                for row in out.chunks_exact_mut(self.n_groups) {
                    softmax(row);
                }
            }
        }
        Ok(out)
    }

    fn predict_margin(&self, rows: &[f64], n_rows: usize) -> Result<Vec<f64>, PredictError> {
        self.margins(rows, n_rows)
    }
}

fn softmax(row: &mut [f64]) {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in row.iter_mut() {
        *v /= sum;
    }
}
