//! Every generated model predicts what Python predicted, to 1e-5.

use serval_runtimes::trees::{load_model_dir, load_model_file, Library, TabularModel};

use crate::fixtures::{model_dirs, model_files, Expected};

/// Absolute for values up to 1, relative beyond (scores of regressions can be large).
const TOLERANCE: f64 = 1e-5;

fn close(got: f64, want: f64) -> bool {
    (got.is_nan() && want.is_nan()) || (got - want).abs() <= TOLERANCE * want.abs().max(1.0)
}

/// Compares, returning the largest absolute difference or a description of mismatches.
fn compare(what: &str, got: &[f64], want: &[f64], width: usize) -> Result<f64, String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} values, Python has {}",
            got.len(),
            want.len()
        ));
    }
    let mut max = 0.0f64;
    let mut bad = Vec::new();
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if !close(g, w) {
            bad.push(format!("row {} col {}: {g} vs {w}", i / width, i % width));
        }
        if !(g.is_nan() && w.is_nan()) {
            max = max.max((g - w).abs());
        }
    }
    if bad.is_empty() {
        Ok(max)
    } else {
        let n = bad.len();
        bad.truncate(5);
        Err(format!("{what}: {n} mismatches: {}", bad.join("; ")))
    }
}

fn check(model: &dyn TabularModel, expected: &Expected) -> Result<(f64, f64), String> {
    if model.n_features() != expected.n_features {
        return Err(format!(
            "n_features {} vs {}",
            model.n_features(),
            expected.n_features
        ));
    }
    if model.n_outputs() != expected.n_outputs {
        return Err(format!(
            "n_outputs {} vs {}",
            model.n_outputs(),
            expected.n_outputs
        ));
    }
    let inputs = expected.flat_inputs();
    let n_rows = expected.inputs.len();
    let predictions = model.predict(&inputs, n_rows).map_err(|e| e.to_string())?;
    let margins = model
        .predict_margin(&inputs, n_rows)
        .map_err(|e| e.to_string())?;
    let p = compare(
        "predictions",
        &predictions,
        &expected.predictions,
        model.n_outputs(),
    )?;
    let m = compare("margins", &margins, &expected.margins, model.n_margins())?;
    Ok((p, m))
}

#[test]
fn every_model_file_matches_python() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for dir in model_dirs() {
        let expected = Expected::read(&dir);
        let files = model_files(&dir);
        assert!(!files.is_empty(), "{}: no model file", dir.display());
        for file in files {
            let name = format!(
                "{}/{}",
                dir.file_name().unwrap().to_string_lossy(),
                file.file_name().unwrap().to_string_lossy()
            );
            let result = load_model_file(&file)
                .map_err(|e| e.to_string())
                .and_then(|model| {
                    let library = if name.starts_with("xgb") {
                        Library::Xgboost
                    } else {
                        Library::Lightgbm
                    };
                    assert_eq!(model.library(), library, "{name}");
                    assert_eq!(
                        model.objective().split(' ').next(),
                        Some(&*expected.objective)
                    );
                    check(model.as_ref(), &expected)
                });
            match result {
                Ok((p, m)) => {
                    checked += 1;
                    eprintln!("{name:48} max |diff| prediction {p:.3e}  margin {m:.3e}");
                }
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert!(checked >= 20, "only {checked} model files checked");
}

#[test]
fn model_dirs_load_their_preferred_file() {
    for dir in model_dirs() {
        let expected = Expected::read(&dir);
        let model = load_model_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        if let Err(e) = check(model.as_ref(), &expected) {
            panic!("{}: {e}", dir.display());
        }
    }
}

/// Short rows mean missing trailing features, exactly as NaN does.
#[test]
fn short_rows_are_padded_with_missing_values() {
    for dir in model_dirs() {
        let expected = Expected::read(&dir);
        let model = load_model_dir(&dir).unwrap();
        let n = model.n_features();
        let keep = n - 2;
        let full = expected.flat_inputs();
        let n_rows = expected.inputs.len();
        let mut short = Vec::new();
        let mut padded = Vec::new();
        for row in full.chunks_exact(n) {
            short.extend_from_slice(&row[..keep]);
            padded.extend_from_slice(&row[..keep]);
            padded.extend(std::iter::repeat_n(f64::NAN, n - keep));
        }
        let a = model.predict(&short, n_rows).unwrap();
        let b = model.predict(&padded, n_rows).unwrap();
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{}",
            dir.display()
        );
    }
}

#[test]
fn empty_batches_predict_nothing() {
    for dir in model_dirs() {
        let model = load_model_dir(&dir).unwrap();
        assert_eq!(model.predict(&[], 0).unwrap(), Vec::<f64>::new());
    }
}

#[test]
fn models_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + ?Sized>() {}
    assert_send_sync::<dyn TabularModel>();
}
