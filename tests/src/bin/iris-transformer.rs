//! A KServe transformer for the cluster test, in the shape KServe's transformer images have:
//! started with `--model_name`, `--predictor_host` and `--http_port`, on
//! `POST /v1/models/<name>:predict` it multiplies every number of the instances by 10, calls
//! `http://<predictor_host>/v1/models/<name>:predict`, and returns the predictor's answer
//! with `"transformed": true` and the predictor host it used. (The same as
//! tests/python/transformer.py, which `serval dev` runs; the cluster's image has no Python.)

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use serval_tests::http_client::{http1, send};

#[derive(Clone, Debug)]
struct Args {
    model_name: String,
    predictor_host: String,
}

fn transform(value: &mut Value) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(transform),
        Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                *value = json!(x * 10.0);
            }
        }
        _ => {}
    }
}

async fn handle(State(args): State<Args>, method: Method, uri: Uri, body: Bytes) -> Response {
    let route = format!("/v1/models/{}:predict", args.model_name);
    if method == Method::GET {
        return Json(json!({"name": args.model_name, "ready": true})).into_response();
    }
    if uri.path() != route {
        let error = format!("no route {}; this is {route}", uri.path());
        return (StatusCode::NOT_FOUND, Json(json!({ "error": error }))).into_response();
    }
    let mut request: Value = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            let error = format!("expected {{\"instances\": [...]}}: {e}");
            return (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response();
        }
    };
    transform(&mut request["instances"]);
    let upstream = format!("http://{}{route}", args.predictor_host);
    match send(&http1(), "POST", &upstream, &request.to_string()).await {
        Ok(answer) => {
            let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut answer: Value = serde_json::from_str(&answer.body)
                .unwrap_or_else(|_| json!({ "error": answer.body }));
            if status == StatusCode::OK {
                answer["transformed"] = json!(true);
                answer["predictor_host"] = json!(args.predictor_host);
            }
            (status, Json(answer)).into_response()
        }
        Err(e) => {
            let error = format!("predictor {upstream}: {e}");
            (StatusCode::BAD_GATEWAY, Json(json!({ "error": error }))).into_response()
        }
    }
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter().enumerate().find_map(|(i, arg)| {
        arg.strip_prefix(&format!("{name}="))
            .map(str::to_string)
            .or_else(|| (arg == name).then(|| args.get(i + 1).cloned()).flatten())
    })
}

#[tokio::main]
async fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let required = |name: &str| {
        flag(&argv, name).unwrap_or_else(|| {
            eprintln!("iris-transformer: {name} is required");
            std::process::exit(2)
        })
    };
    let args = Args {
        model_name: required("--model_name"),
        predictor_host: required("--predictor_host"),
    };
    let port: u16 = flag(&argv, "--http_port")
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port)))
        .await
        .unwrap_or_else(|e| {
            eprintln!("iris-transformer: bind port {port}: {e}");
            std::process::exit(1)
        });
    eprintln!(
        "iris-transformer: {} on port {port}, predictor at {}",
        args.model_name, args.predictor_host
    );
    let app = axum::Router::new().fallback(handle).with_state(args);
    // As PID 1 in its container it has no default signal handling: stop on SIGTERM itself.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    let stopped = async move {
        terminate.recv().await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stopped)
        .await
    {
        eprintln!("iris-transformer: {e}");
        std::process::exit(1);
    }
}
