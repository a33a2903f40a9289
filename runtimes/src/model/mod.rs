//! Backends behind one trait: a model declares its input and output tensors and predicts
//! on a batch of rows. Requests are checked against the declaration before a backend sees
//! them (see [`conform`]), so backends only deal with well-formed tensors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{Config, ModelFormat};
use crate::error::{InferError, RuntimeError};
use crate::tensor::{Datatype, Tensor};

mod conform;
mod onnx;
mod trees;

pub use conform::conform;
pub use trees::TreeModel;

/// A tensor a model takes or returns. `-1` in `shape` is a dimension of any size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: Datatype,
    pub shape: Vec<i64>,
}

/// A loaded model.
pub trait Model: Send + Sync + std::fmt::Debug {
    /// The V2 metadata `platform`, e.g. `onnxruntime_onnx` or `xgboost`.
    fn platform(&self) -> &'static str;

    fn inputs(&self) -> &[TensorSpec];

    fn outputs(&self) -> &[TensorSpec];

    /// Runs the model. `inputs` are in the order of [`inputs`](Self::inputs), conform to
    /// them, and share their first dimension (the rows). Returns one tensor per output, in
    /// order, each with that many rows.
    fn predict(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, InferError>;

    /// Whether rows of separate requests may be stacked into one call: every input's first
    /// dimension is variable.
    fn batchable(&self) -> bool {
        self.inputs().iter().all(|s| s.shape.first() == Some(&-1))
    }
}

/// Loads the model `config` points at, choosing the backend from `--model-format` or the
/// files present.
pub fn load(config: &Config) -> Result<Arc<dyn Model>, RuntimeError> {
    let dir = &config.model_dir;
    if !dir.is_dir() {
        return Err(RuntimeError::Load {
            path: dir.clone(),
            reason: "not a directory".into(),
        });
    }
    let onnx_file = find_onnx(dir)?;
    let format = match config.model_format {
        Some(format) => format,
        None if onnx_file.is_some() => ModelFormat::Onnx,
        // The tree loader finds and recognises XGBoost and LightGBM files itself.
        None => return load_trees(dir, None),
    };
    match format {
        ModelFormat::Onnx => {
            let file = onnx_file.ok_or_else(|| RuntimeError::Load {
                path: dir.clone(),
                reason: "no .onnx file found".into(),
            })?;
            let library = config.ort_dylib_path.as_deref();
            Ok(Arc::new(onnx::OnnxModel::load(&file, library)?))
        }
        ModelFormat::Xgboost => load_trees(dir, Some(crate::trees::Library::Xgboost)),
        ModelFormat::Lightgbm => load_trees(dir, Some(crate::trees::Library::Lightgbm)),
        ModelFormat::Gguf => Err(RuntimeError::Load {
            path: dir.clone(),
            reason: "a GGUF language model is served by the OpenAI server, not as tensors".into(),
        }),
    }
}

fn load_trees(
    dir: &Path,
    wanted: Option<crate::trees::Library>,
) -> Result<Arc<dyn Model>, RuntimeError> {
    // LoadError's message already names the file and the reason.
    let model = crate::trees::load_model_dir(dir).map_err(|e| RuntimeError::Load {
        path: dir.to_owned(),
        reason: e.to_string(),
    })?;
    if let Some(wanted) = wanted.filter(|&w| w != model.library()) {
        return Err(RuntimeError::Load {
            path: dir.to_owned(),
            reason: format!(
                "--model-format asks for {wanted:?} but the file is a {:?} model",
                model.library()
            ),
        });
    }
    Ok(Arc::new(TreeModel::new(model)))
}

/// `model.onnx`, else the only `*.onnx` file in `dir`.
/// The GGUF file to serve when `config` is a language model: `--model-format gguf`, or
/// no format and a `.gguf` file in the model directory (or the directory is that file).
pub fn language_model(config: &Config) -> Result<Option<PathBuf>, RuntimeError> {
    let dir = &config.model_dir;
    match config.model_format {
        Some(ModelFormat::Gguf) => find_gguf(dir)?.map(Some).ok_or_else(|| RuntimeError::Load {
            path: dir.clone(),
            reason: "no .gguf file found".into(),
        }),
        Some(_) => Ok(None),
        None if dir.exists() => find_gguf(dir),
        None => Ok(None),
    }
}

/// The one `.gguf` file in the model directory (or the file itself).
fn find_gguf(dir: &Path) -> Result<Option<PathBuf>, RuntimeError> {
    if dir.is_file() {
        return Ok(dir
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
            .then(|| dir.to_path_buf()));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| RuntimeError::Load {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        })
        .collect();
    found.sort();
    match found.len() {
        0 | 1 => Ok(found.pop()),
        _ => Err(RuntimeError::Load {
            path: dir.to_path_buf(),
            reason: format!(
                "more than one .gguf file ({}): keep one per model directory",
                found
                    .iter()
                    .filter_map(|p| p.file_name()?.to_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

fn find_onnx(dir: &Path) -> Result<Option<PathBuf>, RuntimeError> {
    let preferred = dir.join("model.onnx");
    if preferred.is_file() {
        return Ok(Some(preferred));
    }
    let io = |e: std::io::Error| RuntimeError::Load {
        path: dir.to_owned(),
        reason: e.to_string(),
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "onnx") && path.is_file() {
            found.push(path);
        }
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(RuntimeError::Load {
            path: dir.to_owned(),
            reason: "more than one .onnx file and none named model.onnx; keep one".into(),
        }),
    }
}
