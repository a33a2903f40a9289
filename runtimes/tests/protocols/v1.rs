//! KServe V1 shapes and errors.

use serde_json::json;

use crate::{get, post, served};

#[tokio::test]
async fn lists_and_describes_the_model() {
    let served = served(1 << 20);
    assert_eq!(
        get(&served, "/v1/models").await.json(),
        json!({ "models": ["summer"] })
    );
    assert_eq!(
        get(&served, "/v1/models/summer").await.json(),
        json!({ "name": "summer", "ready": true })
    );
    assert_eq!(get(&served, "/").await.json(), json!({ "status": "alive" }));
}

#[tokio::test]
async fn predicts_instances_and_inputs() {
    let served = served(1 << 20);
    let answer = post(
        &served,
        "/v1/models/summer:predict",
        r#"{"instances": [[1, 2, 3], [-1, -2, 0.5]]}"#,
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json(), json!({ "predictions": [6.0, -2.5] }));
    let answer = post(
        &served,
        "/v1/models/summer:predict",
        r#"{"inputs": [[0, 0, 1]]}"#,
    )
    .await;
    assert_eq!(answer.json(), json!({ "predictions": [1.0] }));
}

#[tokio::test]
async fn bad_input_is_400_naming_what_was_expected() {
    let served = served(1 << 20);
    let predict = |body: &'static str| {
        let served = served.clone();
        async move {
            post(&served, "/v1/models/summer:predict", body)
                .await
                .error(400)
        }
    };
    assert!(predict("{")
        .await
        .starts_with("malformed request: invalid JSON"));
    assert!(predict(r#"{"rows": []}"#)
        .await
        .contains(r#"expected {"instances": [...]}"#));
    let e = predict(r#"{"instances": [[1, 2]]}"#).await;
    assert_eq!(
        e,
        "input instances: shape [1, 2] does not match the model's [-1, 3] (-1 is any size)"
    );
    let e = predict(r#"{"instances": [[1, 2, "x"]]}"#).await;
    assert!(
        e.starts_with("input instances: FP32 data must be numbers, found a string"),
        "{e}"
    );
    let e = predict(r#"{"instances": [[1, 2, 3], [1]]}"#).await;
    assert!(e.contains("ragged"), "{e}");
}

#[tokio::test]
async fn explain_is_not_implemented_and_other_verbs_not_found() {
    let served = served(1 << 20);
    let answer = post(&served, "/v1/models/summer:explain", r#"{"instances": []}"#).await;
    assert_eq!(answer.error(501), "explain is not supported by this server");
    assert_eq!(
        post(&served, "/v1/models/summer:train", "{}").await.status,
        404
    );
    assert_eq!(
        post(&served, "/v1/models/other:predict", "{}").await.status,
        404
    );
}
