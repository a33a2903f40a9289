//! Gradient-boosted tree models evaluated in Rust: XGBoost (JSON and UBJSON) and
//! LightGBM (text), with the predictions their Python packages' `Booster.predict` returns.
//!
//! Inputs and outputs are `f64`. LightGBM computes in `f64`, so anything narrower would
//! change which side of a threshold a value falls; XGBoost computes in `f32` and casts
//! its inputs down exactly as its own `DMatrix` does. `f64` is therefore lossless for
//! both, and it is what JSON request bodies parse to anyway.
//!
//! Missing values are NaN. A row shorter than the model's feature count is padded with
//! NaN (its trailing features are missing); a wider row is an error.

use std::fs;
use std::path::{Path, PathBuf};

mod doc;
mod error;
mod lightgbm;
mod ubjson;
mod xgboost;

pub use error::{LoadError, PredictError};
pub use lightgbm::LightgbmModel;
pub use xgboost::XgboostModel;

/// Bounds on what a model file may claim, so a corrupt header cannot make loading or
/// prediction allocate without limit. Real models are far below both.
pub(crate) const MAX_FEATURES: usize = 1 << 24;
pub(crate) const MAX_GROUPS: usize = 1 << 16;

/// File names tried in a model directory, in order.
pub const MODEL_FILE_NAMES: [&str; 4] = ["model.json", "model.ubj", "model.txt", "model.bst"];

/// The library a model was trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Library {
    Xgboost,
    Lightgbm,
}

/// A model that maps rows of numeric features to rows of outputs.
///
/// Rows are flat and row-major: `rows.len() == n_rows * width` with
/// `width <= n_features()`. Outputs are row-major too, `n_outputs()` values per row.
pub trait TabularModel: Send + Sync + std::fmt::Debug {
    fn library(&self) -> Library;

    /// The objective as the model file names it, e.g. `binary:logistic` or
    /// `multiclass num_class:3`.
    fn objective(&self) -> &str;

    /// Features the model was trained on.
    fn n_features(&self) -> usize;

    /// Values per row returned by [`predict`](Self::predict): 1 for regression, binary
    /// classification and XGBoost's `multi:softmax` (the class index); the class count
    /// for class probabilities.
    fn n_outputs(&self) -> usize;

    /// Values per row returned by [`predict_margin`](Self::predict_margin): one raw score
    /// per class or target.
    fn n_margins(&self) -> usize;

    /// What the library's Python `Booster.predict` returns: values for regression,
    /// probabilities for classification (class indices for `multi:softmax`).
    fn predict(&self, rows: &[f64], n_rows: usize) -> Result<Vec<f64>, PredictError>;

    /// Raw scores before the objective's transform (`output_margin=True` in XGBoost,
    /// `raw_score=True` in LightGBM).
    fn predict_margin(&self, rows: &[f64], n_rows: usize) -> Result<Vec<f64>, PredictError>;
}

/// The width of each row, checked against the model.
pub(crate) fn row_width(
    len: usize,
    n_rows: usize,
    n_features: usize,
) -> Result<usize, PredictError> {
    let shape = PredictError::Shape { len, n_rows };
    let width = match n_rows {
        0 if len == 0 => return Ok(0),
        // Rows have at least one value, which also bounds the output by the input.
        _ if n_rows == 0 || len == 0 || !len.is_multiple_of(n_rows) => return Err(shape),
        _ => len / n_rows,
    };
    if width > n_features {
        return Err(PredictError::TooManyFeatures {
            got: width,
            expected: n_features,
        });
    }
    Ok(width)
}

/// Loads the model in `dir`: the first of [`MODEL_FILE_NAMES`] present, else the only
/// file with one of their extensions.
pub fn load_model_dir(dir: &Path) -> Result<Box<dyn TabularModel>, LoadError> {
    for name in MODEL_FILE_NAMES {
        let path = dir.join(name);
        if path.is_file() {
            return load_model_file(&path);
        }
    }
    let io = |source| LoadError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut candidates: Vec<PathBuf> = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let known = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "json" | "ubj" | "txt" | "bst"));
        if known && path.is_file() {
            candidates.push(path);
        }
    }
    match candidates.len() {
        0 => Err(LoadError::NotFound {
            dir: dir.to_owned(),
        }),
        1 => load_model_file(&candidates[0]),
        _ => {
            let mut files: Vec<String> = candidates
                .iter()
                .filter_map(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .collect();
            files.sort();
            Err(LoadError::Ambiguous {
                dir: dir.to_owned(),
                files,
            })
        }
    }
}

/// Loads one model file, recognising the format from its contents (the extension only
/// breaks ties, e.g. for an unreadable `model.json`).
pub fn load_model_file(path: &Path) -> Result<Box<dyn TabularModel>, LoadError> {
    let bytes = fs::read(path).map_err(|source| LoadError::Io {
        path: path.to_owned(),
        source,
    })?;
    load_model_bytes(&bytes, path)
}

/// Loads a model from memory; `path` names it in errors and its extension is a hint.
pub fn load_model_bytes(bytes: &[u8], path: &Path) -> Result<Box<dyn TabularModel>, LoadError> {
    let format = Format::detect(bytes, path).map_err(|p| p.in_file(path))?;
    let model: Box<dyn TabularModel> = match format {
        Format::XgboostJson => {
            let doc: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
                error::Problem::malformed("", format!("invalid JSON: {e}")).in_file(path)
            })?;
            Box::new(XgboostModel::from_document(&doc).map_err(|p| p.in_file(path))?)
        }
        Format::XgboostUbj => {
            let doc = ubjson::parse(bytes).map_err(|p| p.in_file(path))?;
            Box::new(XgboostModel::from_document(&doc).map_err(|p| p.in_file(path))?)
        }
        Format::LightgbmText => {
            let text = std::str::from_utf8(bytes).map_err(|e| {
                error::Problem::malformed("", format!("not UTF-8 text: {e}")).in_file(path)
            })?;
            Box::new(LightgbmModel::from_text(text).map_err(|p| p.in_file(path))?)
        }
    };
    Ok(model)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    XgboostJson,
    XgboostUbj,
    LightgbmText,
}

impl Format {
    fn detect(bytes: &[u8], path: &Path) -> Result<Self, error::Problem> {
        let trimmed = bytes.trim_ascii_start();
        if let Some(rest) = trimmed.strip_prefix(b"{") {
            // JSON continues with a quote, whitespace or `}`; UBJSON with a length marker.
            return Ok(match rest.first() {
                Some(b'"' | b'}') | None => Format::XgboostJson,
                Some(c) if c.is_ascii_whitespace() => Format::XgboostJson,
                Some(_) => Format::XgboostUbj,
            });
        }
        if trimmed.starts_with(b"tree\n") || trimmed.starts_with(b"tree\r\n") {
            return Ok(Format::LightgbmText);
        }
        if bytes.starts_with(b"binf") {
            return Err(error::Problem::unsupported(
                "XGBoost's legacy binary format (re-save it with save_model(\"model.json\"))",
            ));
        }
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Ok(Format::XgboostJson),
            Some("ubj") => Ok(Format::XgboostUbj),
            Some("txt") => Ok(Format::LightgbmText),
            _ => Err(error::Problem::malformed(
                "",
                "unrecognised format: expected XGBoost JSON or UBJSON, or a LightGBM text model",
            )),
        }
    }
}
