//! Errors from loading a tree model and from predicting with one.

use std::path::PathBuf;

/// A model file could not be turned into a [`TabularModel`](super::TabularModel).
///
/// Every variant names the file (or directory) it is about, so the message alone tells an
/// operator what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file or directory could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a well-formed model: `at` locates the problem inside it (a JSON
    /// path such as `learner.gradient_booster.model.trees[3].left_children`, or a line
    /// such as `line 12 (Tree=0)`), empty when it is the file as a whole.
    #[error("{}: {}{reason}", path.display(), at_prefix(at))]
    Malformed {
        path: PathBuf,
        at: String,
        reason: String,
    },
    /// The file is a valid model that uses a feature this evaluator does not implement.
    #[error("{}: {what} is not supported", path.display())]
    Unsupported { path: PathBuf, what: String },
    /// The directory holds no file this evaluator knows how to load.
    #[error(
        "{}: no tree model found (looked for model.json, model.ubj, model.txt, model.bst)",
        dir.display()
    )]
    NotFound { dir: PathBuf },
    /// The directory holds several candidate model files and none has a preferred name.
    #[error("{}: more than one model file ({}); keep one", dir.display(), files.join(", "))]
    Ambiguous { dir: PathBuf, files: Vec<String> },
}

fn at_prefix(at: &str) -> String {
    if at.is_empty() {
        String::new()
    } else {
        format!("{at}: ")
    }
}

/// A batch of rows could not be evaluated. Nothing here depends on the values themselves:
/// any finite, infinite or NaN value is a valid feature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PredictError {
    /// The flat input does not split into `n_rows` non-empty rows of equal length.
    #[error("{len} input values do not form {n_rows} non-empty rows of equal length")]
    Shape { len: usize, n_rows: usize },
    /// Rows are wider than the model: extra columns would be silently ignored otherwise.
    #[error("rows have {got} features but the model was trained on {expected}")]
    TooManyFeatures { got: usize, expected: usize },
}

/// A problem found while parsing, before the file name is known to the parser.
#[derive(Debug)]
pub(crate) enum Problem {
    Malformed { at: String, reason: String },
    Unsupported(String),
}

impl Problem {
    pub(crate) fn malformed(at: impl Into<String>, reason: impl Into<String>) -> Self {
        Problem::Malformed {
            at: at.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(what: impl Into<String>) -> Self {
        Problem::Unsupported(what.into())
    }

    pub(crate) fn in_file(self, path: impl Into<PathBuf>) -> LoadError {
        let path = path.into();
        match self {
            Problem::Malformed { at, reason } => LoadError::Malformed { path, at, reason },
            Problem::Unsupported(what) => LoadError::Unsupported { path, what },
        }
    }
}
