//! Garbage, truncated and inconsistent model files fail to load with a message naming the
//! file; rows of the wrong shape fail to predict. Nothing panics.

use std::path::{Path, PathBuf};

use serde_json::Value;
use serval_runtimes::trees::{
    load_model_bytes, load_model_dir, LoadError, PredictError, TabularModel,
};

use crate::fixtures::{model_dirs, model_files, test_models};

fn fixture(name: &str, file: &str) -> (PathBuf, Vec<u8>) {
    let path = test_models().join(name).join(file);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, bytes)
}

fn load_err(bytes: &[u8], path: &Path) -> LoadError {
    match load_model_bytes(bytes, path) {
        Ok(model) => panic!("{} loaded: {model:?}", path.display()),
        Err(e) => e,
    }
}

fn json_fixture(name: &str) -> Value {
    serde_json::from_slice(&fixture(name, "model.json").1).unwrap()
}

fn json_err(doc: &Value) -> LoadError {
    load_err(&serde_json::to_vec(doc).unwrap(), Path::new("model.json"))
}

#[test]
fn truncated_files_name_the_file() {
    for dir in model_dirs() {
        for path in model_files(&dir) {
            let bytes = std::fs::read(&path).unwrap();
            // LightGBM's trailing sections are optional: cut before `end of trees`.
            let end = bytes
                .windows(12)
                .position(|w| w == b"end of trees")
                .unwrap_or(bytes.len());
            for cut in [0, 1, 2, 7, end / 10, end / 4, end / 2, end * 3 / 4, end - 1] {
                let err = load_err(&bytes[..cut], &path);
                let message = err.to_string();
                assert!(
                    message.starts_with(&path.display().to_string()),
                    "{message}"
                );
                assert!(matches!(err, LoadError::Malformed { .. }), "{message}");
            }
        }
    }
}

/// Deterministic corruption: flip, zero or duplicate bytes. The result may load (a flipped
/// digit is still a number), but neither loading nor predicting may panic.
#[test]
fn corrupted_files_never_panic() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for name in [
        "xgb-multiclass-softprob",
        "xgb-dart",
        "lgb-categorical",
        "lgb-multiclass",
    ] {
        for path in model_files(&test_models().join(name)) {
            let original = std::fs::read(&path).unwrap();
            for _ in 0..150 {
                let mut bytes = original.clone();
                for _ in 0..(1 + next() % 4) {
                    let i = (next() % bytes.len() as u64) as usize;
                    match next() % 3 {
                        0 => bytes[i] ^= 1 << (next() % 8),
                        1 => bytes[i] = 0,
                        _ => bytes[i] = b"-9e{[]}:,L$#Z\n="[(next() % 15) as usize],
                    }
                }
                if let Ok(model) = load_model_bytes(&bytes, &path) {
                    let n = model.n_features();
                    let rows = [0.5, f64::NAN, -3.0, 1e300, 7.0, 0.0, -0.0, 2.0];
                    let rows: Vec<f64> = rows.iter().cycle().take(2 * n).copied().collect();
                    let _ = model.predict(&rows, 2);
                }
            }
        }
    }
}

#[test]
fn garbage_is_not_a_model() {
    for (name, bytes) in [
        ("model.json", &b"not json"[..]),
        ("model.json", b"{}"),
        ("model.json", b"[1, 2, 3]"),
        ("model.ubj", b"{\x00\x01\x02"),
        ("model.ubj", b""),
        ("model.txt", b"tree\nversion=v4\n"),
        ("model.txt", b"\xff\xfe\x00garbage"),
        ("model.bst", b"\x00\x01\x02\x03"),
        ("weights.bin", b"tree"),
    ] {
        let err = load_err(bytes, Path::new(name));
        assert!(err.to_string().starts_with(name), "{err}");
    }
}

#[test]
fn malformed_json_names_the_field() {
    let mut doc = json_fixture("xgb-regression");
    doc["learner"]["gradient_booster"]["model"]["trees"][3]["left_children"] = "oops".into();
    assert_eq!(
        json_err(&doc).to_string(),
        "model.json: learner.gradient_booster.model.trees[3].left_children: \
         expected array, found string"
    );

    let mut doc = json_fixture("xgb-regression");
    let tree = &mut doc["learner"]["gradient_booster"]["model"]["trees"][0];
    tree["split_indices"][0] = 99.into();
    let err = json_err(&doc);
    assert!(matches!(err, LoadError::Malformed { .. }));
    assert!(err.to_string().contains("feature 99 out of range"), "{err}");

    let mut doc = json_fixture("xgb-regression");
    let trees = &mut doc["learner"]["gradient_booster"]["model"]["trees"];
    trees[1].as_object_mut().unwrap().remove("split_conditions");
    assert_eq!(
        json_err(&doc).to_string(),
        "model.json: learner.gradient_booster.model.trees[1]: missing field `split_conditions`"
    );
}

#[test]
fn cyclic_trees_are_rejected() {
    let mut doc = json_fixture("xgb-regression");
    let tree = &mut doc["learner"]["gradient_booster"]["model"]["trees"][2];
    let last = tree["left_children"].as_array().unwrap().len() - 1;
    // Point the root's grandchild back at the root's child.
    let child = tree["left_children"][0].clone();
    let grandchild = tree["left_children"][child.as_u64().unwrap() as usize].clone();
    assert!(grandchild.as_i64().unwrap() > 0 && grandchild.as_u64().unwrap() as usize <= last);
    tree["left_children"][grandchild.as_u64().unwrap() as usize] = child.clone();
    tree["right_children"][grandchild.as_u64().unwrap() as usize] = child;
    let err = json_err(&doc);
    assert!(err.to_string().contains("not a tree"), "{err}");

    let (path, bytes) = fixture("lgb-regression", "model.txt");
    let text = String::from_utf8(bytes).unwrap();
    let line = text.lines().find(|l| l.starts_with("left_child=")).unwrap();
    let cyclic = text.replacen(
        line,
        &format!("left_child=0{}", &line[line.find(' ').unwrap()..]),
        1,
    );
    let err = load_err(cyclic.as_bytes(), &path);
    assert!(err.to_string().contains("not a tree"), "{err}");
}

#[test]
fn unsupported_models_say_what_is_unsupported() {
    let mut doc = json_fixture("xgb-regression");
    doc["learner"]["objective"]["name"] = "reg:mystery".into();
    let err = json_err(&doc);
    assert!(matches!(err, LoadError::Unsupported { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "model.json: objective `reg:mystery` is not supported"
    );

    let mut doc = json_fixture("xgb-regression");
    doc["learner"]["gradient_booster"]["name"] = "gblinear".into();
    assert!(matches!(json_err(&doc), LoadError::Unsupported { .. }));

    let mut doc = json_fixture("xgb-regression");
    doc["learner"]["gradient_booster"]["model"]["trees"][0]["split_type"][0] = 1.into();
    let err = json_err(&doc);
    assert!(err.to_string().contains("categorical"), "{err}");

    let (path, bytes) = fixture("lgb-regression", "model.txt");
    let text = String::from_utf8(bytes)
        .unwrap()
        .replacen("is_linear=0", "is_linear=1", 1);
    let err = load_err(text.as_bytes(), &path);
    assert!(matches!(err, LoadError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("linear trees"), "{err}");

    let err = load_err(b"binf\x00\x00\x00\x00", Path::new("model.bst"));
    assert!(matches!(err, LoadError::Unsupported { .. }), "{err}");
}

#[test]
fn wrong_shapes_are_predict_errors() {
    for dir in model_dirs() {
        let model: Box<dyn TabularModel> = load_model_dir(&dir).unwrap();
        let n = model.n_features();
        let too_wide = vec![0.0; 2 * (n + 1)];
        assert_eq!(
            model.predict(&too_wide, 2),
            Err(PredictError::TooManyFeatures {
                got: n + 1,
                expected: n
            })
        );
        let ragged = vec![0.0; 2 * n + 1];
        assert_eq!(
            model.predict(&ragged, 2),
            Err(PredictError::Shape {
                len: 2 * n + 1,
                n_rows: 2
            })
        );
        assert!(model.predict(&[1.0], 0).is_err());
        // Rows with no values at all are a shape error, not `n_rows` rows of missing values.
        assert!(model.predict(&[], 3).is_err());
        let message = model.predict_margin(&too_wide, 2).unwrap_err().to_string();
        assert_eq!(
            message,
            format!(
                "rows have {} features but the model was trained on {n}",
                n + 1
            )
        );
    }
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("serval-trees-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn model_dir_selection() {
    let empty = scratch_dir("empty");
    assert!(matches!(
        load_model_dir(&empty),
        Err(LoadError::NotFound { .. })
    ));

    let missing = empty.join("nope");
    let err = load_model_dir(&missing).unwrap_err();
    assert!(matches!(err, LoadError::Io { .. }), "{err}");

    // Any one file with a known extension is taken; two are ambiguous.
    let (_, lgb) = fixture("lgb-binary", "model.txt");
    let one = scratch_dir("one");
    std::fs::write(one.join("booster.txt"), &lgb).unwrap();
    assert_eq!(load_model_dir(&one).unwrap().n_features(), 5);
    std::fs::write(one.join("other.bst"), &lgb).unwrap();
    assert!(matches!(
        load_model_dir(&one),
        Err(LoadError::Ambiguous { .. })
    ));

    // model.bst is recognised by content: XGBoost JSON under KServe's xgbserver name.
    let (_, xgb) = fixture("xgb-binary", "model.json");
    let bst = scratch_dir("bst");
    std::fs::write(bst.join("model.bst"), &xgb).unwrap();
    let model = load_model_dir(&bst).unwrap();
    assert_eq!(model.objective(), "binary:logistic");

    for dir in [empty, one, bst] {
        let _ = std::fs::remove_dir_all(dir);
    }
}
