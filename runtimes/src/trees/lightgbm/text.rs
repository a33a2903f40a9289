//! The parser for LightGBM's text model format:
//!
//! ```text
//! tree
//! version=v4
//! num_class=1
//! num_tree_per_iteration=1
//! max_feature_idx=5
//! objective=binary sigmoid:1
//! …
//!
//! Tree=0
//! num_leaves=3
//! num_cat=0
//! split_feature=2 0
//! threshold=0.5 1.0000000180025095e-35
//! decision_type=2 10
//! left_child=1 -1
//! right_child=-2 -3
//! leaf_value=0.1 -0.2 0.3
//! …
//!
//! end of trees
//! ```
//!
//! Only what prediction needs is read; the sections after `end of trees` (feature
//! importances, parameters) are ignored. A file without `end of trees` is truncated.

use std::collections::HashMap;
use std::str::FromStr;

use super::{LightgbmModel, Node, Transform, CATEGORICAL};
use crate::trees::error::Problem;
use crate::trees::{MAX_FEATURES, MAX_GROUPS};

/// One `key=value` line.
#[derive(Debug, Clone, Copy)]
struct Field<'a> {
    line: usize,
    key: &'a str,
    value: &'a str,
    tree: Option<usize>,
}

impl Field<'_> {
    fn problem(&self, reason: impl Into<String>) -> Problem {
        let at = match self.tree {
            Some(t) => format!("line {} (Tree={t} {})", self.line, self.key),
            None => format!("line {} ({})", self.line, self.key),
        };
        Problem::malformed(at, reason)
    }

    fn one<T: FromStr>(&self) -> Result<T, Problem> {
        self.value
            .trim()
            .parse()
            .map_err(|_| self.problem(format!("cannot parse `{}`", self.value.trim())))
    }

    /// A space-separated list of exactly `len` values.
    fn list<T: FromStr>(&self, len: usize) -> Result<Vec<T>, Problem> {
        let values = self
            .value
            .split_whitespace()
            .map(|s| {
                s.parse()
                    .map_err(|_| self.problem(format!("cannot parse `{s}`")))
            })
            .collect::<Result<Vec<T>, _>>()?;
        if values.len() != len {
            return Err(self.problem(format!("expected {len} values, found {}", values.len())));
        }
        Ok(values)
    }
}

type Fields<'a> = HashMap<&'a str, Field<'a>>;

fn required<'a>(
    fields: &Fields<'a>,
    key: &str,
    block: impl FnOnce() -> String,
) -> Result<Field<'a>, Problem> {
    fields
        .get(key)
        .copied()
        .ok_or_else(|| Problem::malformed(block(), format!("missing `{key}`")))
}

pub(super) fn parse(text: &str) -> Result<LightgbmModel, Problem> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim_end()));
    match lines.find(|(_, l)| !l.is_empty()) {
        Some((_, "tree")) => {}
        _ => {
            return Err(Problem::malformed(
                "",
                "not a LightGBM text model (no `tree` first line)",
            ))
        }
    }

    let mut header = Fields::new();
    let mut average_output = false;
    let mut blocks: Vec<(usize, usize, Fields<'_>)> = Vec::new();
    let mut ended = false;
    for (line, content) in lines {
        if content == "end of trees" {
            ended = true;
            break;
        }
        if content.is_empty() {
            continue;
        }
        if let Some(id) = content.strip_prefix("Tree=") {
            let id = id
                .parse()
                .map_err(|_| Problem::malformed(format!("line {line}"), "bad `Tree=` index"))?;
            if id != blocks.len() {
                return Err(Problem::malformed(
                    format!("line {line}"),
                    format!("expected Tree={}, found Tree={id}", blocks.len()),
                ));
            }
            blocks.push((id, line, Fields::new()));
            continue;
        }
        let (key, value) = content.split_once('=').unwrap_or((content, ""));
        let field = Field {
            line,
            key,
            value,
            tree: blocks.last().map(|b| b.0),
        };
        match blocks.last_mut() {
            Some((_, _, fields)) => {
                fields.insert(key, field);
            }
            None if content == "average_output" => average_output = true,
            None => {
                header.insert(key, field);
            }
        }
    }
    if !ended {
        return Err(Problem::malformed("", "truncated: no `end of trees` line"));
    }

    let header_at = || "header".to_owned();
    let n_features = required(&header, "max_feature_idx", header_at)?
        .one::<usize>()?
        .checked_add(1)
        .ok_or_else(|| Problem::malformed("header", "max_feature_idx too large"))?;
    let num_class = match header.get("num_class") {
        Some(f) => f.one::<usize>()?,
        None => 1,
    };
    let n_groups = match header.get("num_tree_per_iteration") {
        Some(f) => f.one::<usize>()?,
        None => num_class,
    };
    if n_groups == 0 || n_groups > MAX_GROUPS {
        return Err(Problem::malformed(
            "header",
            format!("num_tree_per_iteration must be in 1..={MAX_GROUPS}"),
        ));
    }
    if n_features > MAX_FEATURES {
        return Err(Problem::malformed(
            "header",
            format!("max_feature_idx above {MAX_FEATURES}"),
        ));
    }
    if !blocks.len().is_multiple_of(n_groups) {
        return Err(Problem::malformed(
            "",
            format!(
                "{} trees is not a multiple of num_tree_per_iteration={n_groups}",
                blocks.len()
            ),
        ));
    }
    let objective = header.get("objective").map_or("", |f| f.value.trim());
    let transform = transform(objective)?;

    let mut model = LightgbmModel {
        nodes: Vec::new(),
        leaves: Vec::new(),
        roots: Vec::with_capacity(blocks.len()),
        cat_words: Vec::new(),
        cat_ranges: Vec::new(),
        n_features,
        n_groups,
        average_output,
        transform,
        objective: objective.to_owned(),
    };
    for (id, line, fields) in &blocks {
        let root = read_tree(&mut model, *id, *line, fields)?;
        model.roots.push(root);
    }
    Ok(model)
}

fn transform(objective: &str) -> Result<Transform, Problem> {
    let mut words = objective.split_whitespace();
    let name = words.next().unwrap_or("");
    let mut sigmoid = 1.0;
    let mut sqrt = false;
    for word in words {
        match word.split_once(':') {
            Some(("sigmoid", v)) => {
                sigmoid = v
                    .parse()
                    .map_err(|_| Problem::malformed("objective", format!("bad `{word}`")))?
            }
            None if word == "sqrt" => sqrt = true,
            _ => {}
        }
    }
    Ok(match name {
        "regression"
        | "regression_l2"
        | "l2"
        | "mean_squared_error"
        | "mse"
        | "l2_root"
        | "root_mean_squared_error"
        | "rmse"
        | "regression_l1"
        | "l1"
        | "mae"
        | "huber"
        | "fair"
        | "quantile"
        | "mape" => {
            if sqrt {
                Transform::SignedSquare
            } else {
                Transform::Identity
            }
        }
        "binary" => Transform::Sigmoid(sigmoid),
        "multiclass" | "softmax" => Transform::Softmax,
        "multiclassova" | "multiclass_ova" | "ova" | "ovr" => Transform::SigmoidEach(sigmoid),
        "cross_entropy" | "xentropy" => Transform::Sigmoid(1.0),
        "cross_entropy_lambda" | "xentlambda" => Transform::Log1pExp,
        "poisson" | "gamma" | "tweedie" => Transform::Exp,
        "lambdarank" | "rank_xendcg" | "xendcg" | "custom" | "none" | "" => Transform::Identity,
        other => return Err(Problem::unsupported(format!("objective `{other}`"))),
    })
}

/// Appends one tree to `model` and returns its root in child encoding.
fn read_tree(
    model: &mut LightgbmModel,
    id: usize,
    line: usize,
    fields: &Fields<'_>,
) -> Result<i32, Problem> {
    let block = || format!("line {line} (Tree={id})");
    let field = |key: &str| required(fields, key, block);
    if let Some(linear) = fields.get("is_linear") {
        if linear.one::<u8>()? != 0 {
            return Err(Problem::unsupported("linear trees (linear_tree=true)"));
        }
    }
    let n_leaves: usize = field("num_leaves")?.one()?;
    if n_leaves == 0 {
        return Err(Problem::malformed(block(), "num_leaves is 0"));
    }
    let leaf_values: Vec<f64> = field("leaf_value")?.list(n_leaves)?;
    let leaf_offset = model.leaves.len();
    let node_offset = model.nodes.len();
    let n = n_leaves - 1;
    if leaf_offset + n_leaves > i32::MAX as usize || node_offset + n > i32::MAX as usize {
        return Err(Problem::malformed(block(), "model has too many nodes"));
    }
    model.leaves.extend(leaf_values);
    if n == 0 {
        return Ok(!(leaf_offset as i32));
    }

    let feature_at = field("split_feature")?;
    let features: Vec<i64> = feature_at.list(n)?;
    let threshold_at = field("threshold")?;
    let thresholds: Vec<f64> = threshold_at.list(n)?;
    let decisions: Vec<u8> = field("decision_type")?.list(n)?;
    let left_at = field("left_child")?;
    let lefts: Vec<i64> = left_at.list(n)?;
    let right_at = field("right_child")?;
    let rights: Vec<i64> = right_at.list(n)?;

    let num_cat = match fields.get("num_cat") {
        Some(f) => f.one::<usize>()?,
        None => 0,
    };
    let cat_offset = model.cat_ranges.len();
    if num_cat > 0 {
        let bounds_at = field("cat_boundaries")?;
        let bounds: Vec<usize> = bounds_at.list(num_cat.saturating_add(1))?;
        let words_at = field("cat_threshold")?;
        let words: Vec<u32> = words_at.list(bounds[num_cat])?;
        if bounds[0] != 0 || bounds.windows(2).any(|w| w[0] > w[1]) {
            return Err(bounds_at.problem("boundaries must start at 0 and not decrease"));
        }
        let base = model.cat_words.len();
        for w in bounds.windows(2) {
            let start = u32::try_from(base + w[0])
                .map_err(|_| bounds_at.problem("categorical sets too large"))?;
            model.cat_ranges.push((start, (w[1] - w[0]) as u32));
        }
        model.cat_words.extend(words);
    }

    let child = |at: &Field<'_>, i: usize, c: i64| -> Result<i32, Problem> {
        let encoded = if c >= 0 {
            usize::try_from(c)
                .ok()
                .filter(|c| *c < n)
                .map(|c| (node_offset + c) as i32)
        } else {
            usize::try_from(!c)
                .ok()
                .filter(|l| *l < n_leaves)
                .map(|l| !((leaf_offset + l) as i32))
        };
        encoded.ok_or_else(|| at.problem(format!("node {i}: child {c} out of range")))
    };
    for i in 0..n {
        let feature = usize::try_from(features[i])
            .ok()
            .filter(|f| *f < model.n_features)
            .ok_or_else(|| {
                feature_at.problem(format!(
                    "node {i}: feature {} out of range 0..{}",
                    features[i], model.n_features
                ))
            })?;
        let mut threshold = thresholds[i];
        if decisions[i] & CATEGORICAL != 0 {
            let index = threshold as usize;
            if threshold.fract() != 0.0 || threshold < 0.0 || index >= num_cat {
                return Err(threshold_at.problem(format!(
                    "node {i}: categorical set {threshold} out of range 0..{num_cat}"
                )));
            }
            threshold = (cat_offset + index) as f64;
        }
        model.nodes.push(Node {
            threshold,
            feature: feature as u32,
            left: child(&left_at, i, lefts[i])?,
            right: child(&right_at, i, rights[i])?,
            decision: decisions[i],
        });
    }
    check_acyclic(&model.nodes[node_offset..], node_offset, block)?;
    Ok(node_offset as i32)
}

/// Every split node reachable from the root is reached once, so a walk always ends.
fn check_acyclic(nodes: &[Node], offset: usize, block: impl Fn() -> String) -> Result<(), Problem> {
    let mut seen = vec![false; nodes.len()];
    let mut stack = vec![0usize];
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            return Err(Problem::malformed(
                block(),
                format!("node {i} is reached twice: not a tree"),
            ));
        }
        for child in [nodes[i].left, nodes[i].right] {
            if child >= 0 {
                stack.push(child as usize - offset);
            }
        }
    }
    Ok(())
}
