//! Open Inference Protocol V2 request and response bodies over REST: tensor JSON and the
//! binary tensor extension (a JSON header of `Inference-Header-Content-Length` bytes,
//! then raw tensors for inputs with `binary_data_size` and outputs asked for with
//! `binary_data` / `binary_data_output`).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::InferError;
use crate::tensor::json::parse_nested;
use crate::tensor::{parse_header, raw, Tensor, TensorData};

pub(crate) const HEADER_LENGTH: &str = "inference-header-content-length";

#[derive(Deserialize)]
struct RequestJson<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(borrow)]
    inputs: Vec<InputJson<'a>>,
    #[serde(default)]
    outputs: Vec<OutputRequestJson>,
}

#[derive(Deserialize)]
struct InputJson<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct OutputRequestJson {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// A parsed V2 request.
#[derive(Debug)]
pub(crate) struct InferRequest {
    pub(crate) id: Option<String>,
    pub(crate) inputs: Vec<Tensor>,
    /// Named outputs and whether each is wanted as binary; empty means all.
    pub(crate) outputs: Vec<(String, bool)>,
    /// Whether outputs not named in `outputs` come back as binary.
    pub(crate) binary_by_default: bool,
}

fn flag(parameters: &Map<String, Value>, key: &str) -> bool {
    parameters
        .get(key)
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Parses a body; `json_len` is the `Inference-Header-Content-Length` header, if any.
pub(crate) fn parse_request(
    body: &[u8],
    json_len: Option<usize>,
) -> Result<InferRequest, InferError> {
    let (json, mut binary) = match json_len {
        Some(n) if n <= body.len() => body.split_at(n),
        Some(n) => {
            return Err(InferError::Malformed(format!(
                "{HEADER_LENGTH} is {n} but the body has only {} bytes",
                body.len()
            )))
        }
        None => (body, &[][..]),
    };
    let request: RequestJson<'_> = serde_json::from_slice(json)
        .map_err(|e| InferError::Malformed(format!("invalid inference request JSON: {e}")))?;
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for input in request.inputs {
        let name = input.name;
        let fail = |reason: String| InferError::input(&name, reason);
        let (datatype, shape) = parse_header(&input.datatype, &input.shape).map_err(fail)?;
        let data = match (input.parameters.get("binary_data_size"), input.data) {
            (Some(size), _) => {
                let size = size
                    .as_u64()
                    .and_then(|s| usize::try_from(s).ok())
                    .ok_or_else(|| {
                        fail("binary_data_size must be a non-negative integer".into())
                    })?;
                if size > binary.len() {
                    return Err(fail(format!(
                        "binary_data_size is {size} but only {} bytes of binary data are left",
                        binary.len()
                    )));
                }
                let (mine, rest) = binary.split_at(size);
                binary = rest;
                raw::decode(datatype, mine).map_err(fail)?
            }
            (None, Some(data)) => parse_nested(datatype, data.get()).map_err(fail)?.0,
            (None, None) => return Err(fail("has neither data nor binary_data_size".into())),
        };
        inputs.push(Tensor { name, shape, data });
    }
    if !binary.is_empty() {
        return Err(InferError::Malformed(format!(
            "{} bytes of binary data follow the JSON but no input claims them",
            binary.len()
        )));
    }
    let binary_by_default = flag(&request.parameters, "binary_data_output");
    let outputs = request
        .outputs
        .into_iter()
        .map(|o| {
            let binary = o
                .parameters
                .get("binary_data")
                .and_then(Value::as_bool)
                .unwrap_or(binary_by_default);
            (o.name, binary)
        })
        .collect();
    Ok(InferRequest {
        id: request.id,
        inputs,
        outputs,
        binary_by_default,
    })
}

#[derive(Serialize)]
struct ResponseJson<'a> {
    model_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<OutputJson<'a>>,
}

#[derive(Serialize)]
struct OutputJson<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinarySize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a TensorData>,
}

#[derive(Serialize)]
struct BinarySize {
    binary_data_size: usize,
}

/// The encoded response: the body, and the JSON header's length when raw tensors follow.
pub(crate) struct EncodedResponse {
    pub(crate) body: Vec<u8>,
    pub(crate) json_len: Option<usize>,
}

/// Encodes `outputs`; those for which `binary` is true go as raw bytes after the JSON.
pub(crate) fn encode_response(
    model_name: &str,
    model_version: Option<&str>,
    id: Option<&str>,
    outputs: &[Tensor],
    binary: impl Fn(&str) -> bool,
) -> Result<EncodedResponse, InferError> {
    let wants_binary: Vec<bool> = outputs.iter().map(|o| binary(&o.name)).collect();
    let json = ResponseJson {
        model_name,
        model_version,
        id,
        outputs: outputs
            .iter()
            .zip(&wants_binary)
            .map(|(o, &bin)| OutputJson {
                name: &o.name,
                datatype: o.data.datatype().name(),
                shape: &o.shape,
                parameters: bin.then(|| BinarySize {
                    binary_data_size: raw::encoded_len(&o.data),
                }),
                data: (!bin).then_some(&o.data),
            })
            .collect(),
    };
    let mut body = serde_json::to_vec(&json).map_err(|e| InferError::Model(e.to_string()))?;
    if !wants_binary.contains(&true) {
        return Ok(EncodedResponse {
            body,
            json_len: None,
        });
    }
    let json_len = body.len();
    for (output, _) in outputs.iter().zip(&wants_binary).filter(|(_, &bin)| bin) {
        raw::encode(&output.data, &mut body);
    }
    Ok(EncodedResponse {
        body,
        json_len: Some(json_len),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Datatype;

    #[test]
    fn parses_json_and_binary_inputs() {
        let json = br#"{"id":"7","inputs":[
            {"name":"a","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4]]},
            {"name":"b","shape":[2],"datatype":"INT64","parameters":{"binary_data_size":16}}],
            "outputs":[{"name":"y","parameters":{"binary_data":true}}]}"#;
        let mut body = json.to_vec();
        body.extend_from_slice(&5i64.to_le_bytes());
        body.extend_from_slice(&(-6i64).to_le_bytes());
        let request = parse_request(&body, Some(json.len())).unwrap();
        assert_eq!(request.id.as_deref(), Some("7"));
        assert_eq!(
            request.inputs[0].data,
            TensorData::Fp32(vec![1.0, 2.0, 3.0, 4.0])
        );
        assert_eq!(request.inputs[1].data, TensorData::Int64(vec![5, -6]));
        assert_eq!(request.outputs, vec![("y".to_string(), true)]);
    }

    #[test]
    fn rejects_bad_inputs_by_name() {
        let parse = |s: &str| parse_request(s.as_bytes(), None).unwrap_err().to_string();
        let e = parse(r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP99","data":[1]}]}"#);
        assert!(e.starts_with("input x: unknown datatype \"FP99\""), "{e}");
        let e = parse(r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP16","data":[1]}]}"#);
        assert_eq!(e, "input x: datatype FP16 is not supported");
        let e = parse(r#"{"inputs":[{"name":"x","shape":[1],"datatype":"BOOL","data":[1]}]}"#);
        assert!(e.contains("BOOL data must be true or false"), "{e}");
        let e = parse(r#"{"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[1]}]}"#);
        assert!(e.contains("negative"), "{e}");
        let e = parse(r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]}"#);
        assert!(e.contains("neither data nor binary_data_size"), "{e}");
        assert!(parse("{").starts_with("malformed request: invalid inference request JSON"));
        assert!(parse(r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}}]}"#)
            .contains("only 0 bytes"));
    }

    #[test]
    fn encodes_binary_outputs_after_the_json() {
        let outputs = [
            Tensor {
                name: "p".into(),
                shape: vec![1, 2],
                data: TensorData::Fp32(vec![0.25, 0.75]),
            },
            Tensor {
                name: "l".into(),
                shape: vec![1],
                data: TensorData::Bytes(vec![b"ok".to_vec()]),
            },
        ];
        let encoded = encode_response("m", None, None, &outputs, |name| name == "p").unwrap();
        let n = encoded.json_len.unwrap();
        let json: Value = serde_json::from_slice(&encoded.body[..n]).unwrap();
        assert_eq!(json["outputs"][0]["parameters"]["binary_data_size"], 8);
        assert!(json["outputs"][0].get("data").is_none());
        assert_eq!(json["outputs"][1]["data"], serde_json::json!(["ok"]));
        assert_eq!(
            raw::decode(Datatype::Fp32, &encoded.body[n..]).unwrap(),
            outputs[0].data
        );
    }
}
