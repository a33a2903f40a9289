//! Tree-model evaluation against fixtures that XGBoost and LightGBM themselves produced
//! (`tools/make-test-models.sh`), plus bad-input handling.
//!
//! One test binary, so the fixtures are generated at most once per run.

mod bad_input;
mod fixtures;
mod python_parity;
