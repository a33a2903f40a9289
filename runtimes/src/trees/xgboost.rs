//! XGBoost models saved with `Booster.save_model` as JSON (`model.json`) or UBJSON
//! (`model.ubj`), evaluated the way XGBoost's CPU predictor does.
//!
//! XGBoost works in `f32` throughout: features are cast to `f32` when the `DMatrix` is
//! built, split conditions and leaf values are `f32`, and each row's margin is summed in
//! `f32` starting from the base margin, tree by tree in model order. This module does the
//! same in the same order, so results match Python bit for bit in the common case; the
//! output transforms (sigmoid, softmax) may differ from C's `expf` in the last ulp.

use super::error::PredictError;
use super::{row_width, Library, TabularModel};

mod load;

/// `Node::feature` value marking a leaf.
const LEAF: u32 = u32::MAX;
/// Bit of `Node::feature` set when a missing value goes left.
const DEFAULT_LEFT: u32 = 1 << 31;

/// One tree node, 16 bytes. Array-of-structs rather than struct-of-arrays: a walk reads
/// every field of a node at once, so one cache line per step beats four.
#[derive(Debug, Clone, Copy)]
struct Node {
    /// The split condition, or the leaf value for a leaf.
    value: f32,
    /// Split feature index, `| DEFAULT_LEFT` when missing goes left; `LEAF` for a leaf.
    feature: u32,
    /// Indices into `XgboostModel::nodes` (absolute, not per tree).
    left: u32,
    right: u32,
}

#[derive(Debug, Clone, Copy)]
struct Tree {
    root: u32,
    group: u32,
    /// DART's per-tree weight; 1 for gbtree (multiplying by 1 is exact).
    weight: f32,
}

/// How raw scores become predictions, per `learner.objective.name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transform {
    Identity,
    Sigmoid,
    Exp,
    Hinge,
    Softmax,
    ArgMax,
}

/// A loaded XGBoost tree ensemble (`gbtree` or `dart`).
#[derive(Debug)]
pub struct XgboostModel {
    nodes: Vec<Node>,
    trees: Vec<Tree>,
    /// One margin per output group (class or target).
    base_margin: Vec<f32>,
    n_features: usize,
    transform: Transform,
    objective: String,
}

impl XgboostModel {
    fn n_groups(&self) -> usize {
        self.base_margin.len()
    }

    /// Raw scores, `n_rows × n_groups`, in `f32` as XGBoost computes them.
    fn margins(&self, rows: &[f64], n_rows: usize) -> Result<Vec<f32>, PredictError> {
        let width = row_width(rows.len(), n_rows, self.n_features)?;
        let groups = self.n_groups();
        let mut out = Vec::with_capacity(n_rows * groups);
        // Columns past `width` stay NaN: missing.
        let mut x = vec![f32::NAN; self.n_features];
        for r in 0..n_rows {
            let row = &rows[r * width..(r + 1) * width];
            for (dst, src) in x.iter_mut().zip(row) {
                *dst = *src as f32;
            }
            let start = out.len();
            out.extend_from_slice(&self.base_margin);
            let acc = &mut out[start..];
            for tree in &self.trees {
                acc[tree.group as usize] += self.leaf(tree.root, &x) * tree.weight;
            }
        }
        Ok(out)
    }

    /// Walks one tree. Loading checked every index and that each tree is acyclic, so this
    /// ends at a leaf within the tree's node count.
    #[inline]
    fn leaf(&self, root: u32, x: &[f32]) -> f32 {
        let mut node = self.nodes[root as usize];
        while node.feature != LEAF {
            let fvalue = x[(node.feature & !DEFAULT_LEFT) as usize];
            let next = if fvalue.is_nan() {
                if node.feature & DEFAULT_LEFT != 0 {
                    node.left
                } else {
                    node.right
                }
            } else if fvalue < node.value {
                node.left
            } else {
                node.right
            };
            node = self.nodes[next as usize];
        }
        node.value
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl TabularModel for XgboostModel {
    fn library(&self) -> Library {
        Library::Xgboost
    }

    fn objective(&self) -> &str {
        &self.objective
    }

    fn n_features(&self) -> usize {
        self.n_features
    }

    fn n_outputs(&self) -> usize {
        match self.transform {
            Transform::ArgMax => 1,
            _ => self.n_groups(),
        }
    }

    fn n_margins(&self) -> usize {
        self.n_groups()
    }

    fn predict(&self, rows: &[f64], n_rows: usize) -> Result<Vec<f64>, PredictError> {
        let margins = self.margins(rows, n_rows)?;
        let groups = self.n_groups();
        Ok(match self.transform {
            Transform::Identity => margins.iter().map(|&m| f64::from(m)).collect(),
            Transform::Sigmoid => margins.iter().map(|&m| f64::from(sigmoid(m))).collect(),
            Transform::Exp => margins.iter().map(|&m| f64::from(m.exp())).collect(),
            Transform::Hinge => margins
                .iter()
                .map(|&m| if m > 0.0 { 1.0 } else { 0.0 })
                .collect(),
            Transform::Softmax => {
                let mut out = Vec::with_capacity(margins.len());
                for row in margins.chunks_exact(groups) {
                    softmax_f32(row, &mut out);
                }
                out
            }
            Transform::ArgMax => margins
                .chunks_exact(groups)
                .map(|row| argmax(row) as f64)
                .collect(),
        })
    }

    fn predict_margin(&self, rows: &[f64], n_rows: usize) -> Result<Vec<f64>, PredictError> {
        Ok(self
            .margins(rows, n_rows)?
            .into_iter()
            .map(f64::from)
            .collect())
    }
}

/// Softmax as XGBoost computes it: `f32` exponentials, a `f64` running sum.
fn softmax_f32(row: &[f32], out: &mut Vec<f64>) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let start = out.len();
    let mut sum = 0.0f64;
    for &m in row {
        let e = (m - max).exp();
        sum += f64::from(e);
        out.push(f64::from(e));
    }
    let sum = sum as f32;
    for v in &mut out[start..] {
        *v = f64::from(*v as f32 / sum);
    }
}

/// Index of the first largest value, as `std::max_element` picks it.
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}
