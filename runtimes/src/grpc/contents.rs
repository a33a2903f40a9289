//! Tensors to and from the gRPC messages: typed `contents` or `raw_input_contents` in,
//! `raw_output_contents` out (what Triton answers and every client reads).

use crate::error::InferError;
use crate::proto::model_infer_request::InferInputTensor;
use crate::proto::model_infer_response::InferOutputTensor;
use crate::proto::InferTensorContents;
use crate::tensor::{parse_header, raw, Datatype, Tensor, TensorData};

/// One request input; `raw` is its entry of `raw_input_contents`, if those are used.
pub(super) fn input_tensor(
    input: InferInputTensor,
    raw: Option<&[u8]>,
) -> Result<Tensor, InferError> {
    let name = input.name;
    let fail = |reason: String| InferError::input(&name, reason);
    let (datatype, shape) = parse_header(&input.datatype, &input.shape).map_err(fail)?;
    let data = match raw {
        Some(bytes) => {
            if input.contents.is_some() {
                return Err(fail("has both contents and raw_input_contents".into()));
            }
            raw::decode(datatype, bytes).map_err(fail)?
        }
        None => typed(datatype, input.contents.unwrap_or_default()).map_err(fail)?,
    };
    Ok(Tensor { name, shape, data })
}

fn narrow<S: Copy + std::fmt::Display, T: TryFrom<S>>(
    values: Vec<S>,
    datatype: Datatype,
) -> Result<Vec<T>, String> {
    values
        .into_iter()
        .map(|v| T::try_from(v).map_err(|_| format!("{v} is out of range for {datatype}")))
        .collect()
}

fn typed(datatype: Datatype, c: InferTensorContents) -> Result<TensorData, String> {
    Ok(match datatype {
        Datatype::Bool => TensorData::Bool(c.bool_contents),
        Datatype::Int8 => TensorData::Int8(narrow(c.int_contents, datatype)?),
        Datatype::Int16 => TensorData::Int16(narrow(c.int_contents, datatype)?),
        Datatype::Int32 => TensorData::Int32(c.int_contents),
        Datatype::Int64 => TensorData::Int64(c.int64_contents),
        Datatype::Uint8 => TensorData::Uint8(narrow(c.uint_contents, datatype)?),
        Datatype::Uint16 => TensorData::Uint16(narrow(c.uint_contents, datatype)?),
        Datatype::Uint32 => TensorData::Uint32(c.uint_contents),
        Datatype::Uint64 => TensorData::Uint64(c.uint64_contents),
        Datatype::Fp32 => TensorData::Fp32(c.fp32_contents),
        Datatype::Fp64 => TensorData::Fp64(c.fp64_contents),
        Datatype::Bytes => TensorData::Bytes(c.bytes_contents),
        Datatype::Fp16 | Datatype::Bf16 => {
            return Err(format!("datatype {datatype} is not supported"))
        }
    })
}

/// An output's description and its raw bytes.
pub(super) fn output_tensor(tensor: &Tensor) -> (InferOutputTensor, Vec<u8>) {
    let mut bytes = Vec::new();
    raw::encode(&tensor.data, &mut bytes);
    let description = InferOutputTensor {
        name: tensor.name.clone(),
        datatype: tensor.data.datatype().name().to_owned(),
        shape: tensor.shape.iter().map(|&d| d as i64).collect(),
        parameters: Default::default(),
        contents: None,
    };
    (description, bytes)
}
