//! Locating (and if needed generating) the `test-models/` fixtures.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What Python predicted for one model (`expected.json`).
#[derive(Debug, Deserialize)]
pub(crate) struct Expected {
    pub(crate) objective: String,
    pub(crate) n_features: usize,
    pub(crate) n_outputs: usize,
    /// `None` is a missing value.
    pub(crate) inputs: Vec<Vec<Option<f64>>>,
    pub(crate) predictions: Vec<f64>,
    pub(crate) margins: Vec<f64>,
}

impl Expected {
    pub(crate) fn read(dir: &Path) -> Expected {
        let path = dir.join("expected.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The inputs as one flat row-major buffer, missing values as NaN.
    pub(crate) fn flat_inputs(&self) -> Vec<f64> {
        self.inputs
            .iter()
            .flatten()
            .map(|v| v.unwrap_or(f64::NAN))
            .collect()
    }
}

pub(crate) use serval_tests::runtime::test_models;

/// Every model directory, sorted by name.
pub(crate) fn model_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(test_models())
        .expect("read test-models")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("expected.json").is_file())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 10,
        "expected the generated models, found {dirs:?}"
    );
    dirs
}

/// The model files in a fixture directory.
pub(crate) fn model_files(dir: &Path) -> Vec<PathBuf> {
    ["model.json", "model.ubj", "model.txt", "model.bst"]
        .iter()
        .map(|name| dir.join(name))
        .filter(|p| p.is_file())
        .collect()
}
