//! ONNX models through ONNX Runtime, loaded at run time from `libonnxruntime.so` so the
//! binary neither links nor downloads it. scikit-learn models converted by skl2onnx
//! (zipmap off) and PyTorch/TensorFlow exports all come through here.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use ort::environment::Environment;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, TensorElementType, ValueType};

use super::{Model, TensorSpec};
use crate::error::{InferError, RuntimeError};
use crate::tensor::{Datatype, Tensor, TensorData};

/// Sessions kept per model. `Session::run` needs `&mut`, so concurrent requests each take
/// a session; each runs single-threaded, which suits the small tabular models served here
/// best (no thread hand-off per call), while the pool still uses several cores.
const MAX_SESSIONS: usize = 4;

#[derive(Debug)]
pub(crate) struct OnnxModel {
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

/// The process's one ONNX Runtime environment; the library can be loaded only once.
static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

fn environment(library: Option<&Path>) -> Result<&'static Environment, RuntimeError> {
    let env = ENVIRONMENT.get_or_init(|| {
        let path = library.map_or_else(|| PathBuf::from("libonnxruntime.so"), Path::to_owned);
        // dlopen's own message for a missing file can be as terse as "dlopen failed".
        if path.components().count() > 1 && !path.exists() {
            return Err(format!(
                "cannot load the ONNX Runtime library, which ONNX models need: {} does not exist; \
                 set ORT_DYLIB_PATH (or --ort-dylib-path) to libonnxruntime.so",
                path.display()
            ));
        }
        let builder = ort::init_from(&path).map_err(|e| {
            format!(
                "cannot load the ONNX Runtime library, which ONNX models need: {e}; \
                 set ORT_DYLIB_PATH (or --ort-dylib-path) to libonnxruntime.so \
                 (the onnxruntime PyPI wheel has it in onnxruntime/capi/)"
            )
        })?;
        builder
            .with_name("serval")
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime from {}: {e}", path.display()))
    });
    env.as_ref()
        .map_err(|e| RuntimeError::OnnxRuntime(e.clone()))
}

impl OnnxModel {
    pub(crate) fn load(file: &Path, library: Option<&Path>) -> Result<Self, RuntimeError> {
        let env = environment(library)?;
        let fail = |reason: String| RuntimeError::Load {
            path: file.to_owned(),
            reason,
        };
        let count = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_SESSIONS);
        let mut sessions = Vec::with_capacity(count);
        for _ in 0..count {
            let session = Session::builder(env)
                .and_then(|b| b.with_intra_threads(1).map_err(Into::into))
                .and_then(|mut b| b.commit_from_file(file))
                .map_err(|e| fail(e.to_string()))?;
            sessions.push(Mutex::new(session));
        }
        let first = sessions[0]
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let spec = |name: &str, dtype: &ValueType, what: &str| {
            tensor_spec(name, dtype).map_err(|reason| fail(format!("{what} {name}: {reason}")))
        };
        let inputs = first
            .inputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype(), "input"))
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = first
            .outputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype(), "output"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            sessions,
            next: AtomicUsize::new(0),
            inputs,
            outputs,
        })
    }

    /// A free session if there is one, else waits for the next in turn.
    fn run<R>(&self, f: impl FnOnce(&mut Session) -> R) -> R {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.sessions.len();
        for i in 0..n {
            if let Ok(mut session) = self.sessions[(start + i) % n].try_lock() {
                return f(&mut session);
            }
        }
        let mut session = self.sessions[start % n]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut session)
    }
}

fn tensor_spec(name: &str, dtype: &ValueType) -> Result<TensorSpec, String> {
    let ValueType::Tensor { ty, shape, .. } = dtype else {
        return Err(format!(
            "is a {dtype}, not a tensor (for skl2onnx classifiers, convert with \
             options={{id(model): {{'zipmap': False}}}})"
        ));
    };
    let datatype = datatype(*ty).ok_or_else(|| format!("element type {ty:?} is not supported"))?;
    Ok(TensorSpec {
        name: name.into(),
        datatype,
        shape: shape.iter().copied().collect(),
    })
}

fn datatype(ty: TensorElementType) -> Option<Datatype> {
    Some(match ty {
        TensorElementType::Bool => Datatype::Bool,
        TensorElementType::Uint8 => Datatype::Uint8,
        TensorElementType::Uint16 => Datatype::Uint16,
        TensorElementType::Uint32 => Datatype::Uint32,
        TensorElementType::Uint64 => Datatype::Uint64,
        TensorElementType::Int8 => Datatype::Int8,
        TensorElementType::Int16 => Datatype::Int16,
        TensorElementType::Int32 => Datatype::Int32,
        TensorElementType::Int64 => Datatype::Int64,
        TensorElementType::Float16 => Datatype::Fp16,
        TensorElementType::Bfloat16 => Datatype::Bf16,
        TensorElementType::Float32 => Datatype::Fp32,
        TensorElementType::Float64 => Datatype::Fp64,
        TensorElementType::String => Datatype::Bytes,
        _ => return None,
    })
}

fn to_value(tensor: Tensor) -> Result<SessionInputValue<'static>, InferError> {
    use ort::value::Tensor as OrtTensor;
    let shape = tensor.shape;
    let failed = |e: ort::Error| InferError::Model(format!("input {}: {e}", tensor.name));
    macro_rules! owned {
        ($v:expr) => {
            OrtTensor::from_array((shape, $v))
                .map(Into::into)
                .map_err(failed)
        };
    }
    match tensor.data {
        TensorData::Bool(v) => owned!(v),
        TensorData::Uint8(v) => owned!(v),
        TensorData::Uint16(v) => owned!(v),
        TensorData::Uint32(v) => owned!(v),
        TensorData::Uint64(v) => owned!(v),
        TensorData::Int8(v) => owned!(v),
        TensorData::Int16(v) => owned!(v),
        TensorData::Int32(v) => owned!(v),
        TensorData::Int64(v) => owned!(v),
        TensorData::Fp32(v) => owned!(v),
        TensorData::Fp64(v) => owned!(v),
        TensorData::Bytes(v) => {
            let strings = v
                .into_iter()
                .map(String::from_utf8)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| {
                    InferError::input(
                        &tensor.name,
                        "BYTES elements must be UTF-8 text for an ONNX string input",
                    )
                })?;
            OrtTensor::from_string_array((shape, strings.as_slice()))
                .map(Into::into)
                .map_err(failed)
        }
    }
}

fn from_value(name: &str, value: &DynValue) -> Result<Tensor, ort::Error> {
    macro_rules! copy {
        ($variant:ident, $t:ty) => {{
            let (shape, data) = value.try_extract_tensor::<$t>()?;
            (shape, TensorData::$variant(data.to_vec()))
        }};
    }
    let ty = value.dtype().tensor_type();
    let (shape, data) = match ty {
        Some(TensorElementType::Bool) => copy!(Bool, bool),
        Some(TensorElementType::Uint8) => copy!(Uint8, u8),
        Some(TensorElementType::Uint16) => copy!(Uint16, u16),
        Some(TensorElementType::Uint32) => copy!(Uint32, u32),
        Some(TensorElementType::Uint64) => copy!(Uint64, u64),
        Some(TensorElementType::Int8) => copy!(Int8, i8),
        Some(TensorElementType::Int16) => copy!(Int16, i16),
        Some(TensorElementType::Int32) => copy!(Int32, i32),
        Some(TensorElementType::Int64) => copy!(Int64, i64),
        Some(TensorElementType::Float32) => copy!(Fp32, f32),
        Some(TensorElementType::Float64) => copy!(Fp64, f64),
        Some(TensorElementType::String) => {
            let (shape, strings) = value.try_extract_strings()?;
            (
                shape,
                TensorData::Bytes(strings.into_iter().map(String::into_bytes).collect()),
            )
        }
        other => {
            return Err(ort::Error::new(format!(
                "output {name}: unsupported type {other:?}"
            )))
        }
    };
    let shape = shape.iter().map(|&d| d.max(0) as usize).collect();
    Ok(Tensor {
        name: name.to_owned(),
        shape,
        data,
    })
}

impl Model for OnnxModel {
    fn platform(&self) -> &'static str {
        "onnxruntime_onnx"
    }

    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn predict(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, InferError> {
        let values = inputs
            .into_iter()
            .map(|t| Ok((Cow::Owned(t.name.clone()), to_value(t)?)))
            .collect::<Result<Vec<(Cow<'static, str>, SessionInputValue<'static>)>, InferError>>(
            )?;
        self.run(|session| {
            let outputs = session
                .run(values)
                .map_err(|e| InferError::Model(e.to_string()))?;
            self.outputs
                .iter()
                .enumerate()
                .map(|(i, spec)| {
                    from_value(&spec.name, &outputs[i])
                        .map_err(|e| InferError::Model(e.to_string()))
                })
                .collect()
        })
    }
}
