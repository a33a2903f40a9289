//! Tensors as the protocols carry them: a name, a shape and flat row-major data of one of
//! the Open Inference Protocol's datatypes.

mod convert;
pub(crate) mod json;
pub(crate) mod raw;

/// An Open Inference Protocol datatype. FP16 and BF16 are named so requests using them get
/// a clear "not supported" rather than "unknown datatype".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datatype {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Bf16,
    Fp32,
    Fp64,
    Bytes,
}

impl Datatype {
    const ALL: [Datatype; 14] = [
        Datatype::Bool,
        Datatype::Uint8,
        Datatype::Uint16,
        Datatype::Uint32,
        Datatype::Uint64,
        Datatype::Int8,
        Datatype::Int16,
        Datatype::Int32,
        Datatype::Int64,
        Datatype::Fp16,
        Datatype::Bf16,
        Datatype::Fp32,
        Datatype::Fp64,
        Datatype::Bytes,
    ];

    /// The protocol's name, e.g. `FP32`.
    pub fn name(self) -> &'static str {
        match self {
            Datatype::Bool => "BOOL",
            Datatype::Uint8 => "UINT8",
            Datatype::Uint16 => "UINT16",
            Datatype::Uint32 => "UINT32",
            Datatype::Uint64 => "UINT64",
            Datatype::Int8 => "INT8",
            Datatype::Int16 => "INT16",
            Datatype::Int32 => "INT32",
            Datatype::Int64 => "INT64",
            Datatype::Fp16 => "FP16",
            Datatype::Bf16 => "BF16",
            Datatype::Fp32 => "FP32",
            Datatype::Fp64 => "FP64",
            Datatype::Bytes => "BYTES",
        }
    }

    pub fn parse(name: &str) -> Option<Datatype> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    pub(crate) fn is_numeric(self) -> bool {
        !matches!(self, Datatype::Bool | Datatype::Bytes)
    }
}

/// A request tensor's declared datatype and shape, checked the same for REST and gRPC: a
/// known and supported datatype, no negative dimension.
pub(crate) fn parse_header(
    datatype: &str,
    shape: &[i64],
) -> Result<(Datatype, Vec<usize>), String> {
    let parsed = Datatype::parse(datatype).ok_or_else(|| {
        format!(
            "unknown datatype {datatype:?}; expected BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP32, FP64 or BYTES"
        )
    })?;
    if matches!(parsed, Datatype::Fp16 | Datatype::Bf16) {
        return Err(format!("datatype {parsed} is not supported"));
    }
    let dims = shape
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| format!("shape {shape:?} has a negative dimension"))
        })
        .collect::<Result<Vec<usize>, _>>()?;
    Ok((parsed, dims))
}

impl std::fmt::Display for Datatype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Flat row-major elements of one datatype. BYTES elements are arbitrary byte strings.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    Uint8(Vec<u8>),
    Uint16(Vec<u16>),
    Uint32(Vec<u32>),
    Uint64(Vec<u64>),
    Int8(Vec<i8>),
    Int16(Vec<i16>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Fp32(Vec<f32>),
    Fp64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

/// Runs `$body` with `$v` bound to the inner `Vec` of any variant.
macro_rules! with_vec {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => $body,
            TensorData::Uint8($v) => $body,
            TensorData::Uint16($v) => $body,
            TensorData::Uint32($v) => $body,
            TensorData::Uint64($v) => $body,
            TensorData::Int8($v) => $body,
            TensorData::Int16($v) => $body,
            TensorData::Int32($v) => $body,
            TensorData::Int64($v) => $body,
            TensorData::Fp32($v) => $body,
            TensorData::Fp64($v) => $body,
            TensorData::Bytes($v) => $body,
        }
    };
}
pub(crate) use with_vec;

impl TensorData {
    pub fn len(&self) -> usize {
        with_vec!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn datatype(&self) -> Datatype {
        match self {
            TensorData::Bool(_) => Datatype::Bool,
            TensorData::Uint8(_) => Datatype::Uint8,
            TensorData::Uint16(_) => Datatype::Uint16,
            TensorData::Uint32(_) => Datatype::Uint32,
            TensorData::Uint64(_) => Datatype::Uint64,
            TensorData::Int8(_) => Datatype::Int8,
            TensorData::Int16(_) => Datatype::Int16,
            TensorData::Int32(_) => Datatype::Int32,
            TensorData::Int64(_) => Datatype::Int64,
            TensorData::Fp32(_) => Datatype::Fp32,
            TensorData::Fp64(_) => Datatype::Fp64,
            TensorData::Bytes(_) => Datatype::Bytes,
        }
    }

    /// An empty vector of `datatype` with room for `capacity` elements.
    pub(crate) fn with_capacity(datatype: Datatype, capacity: usize) -> Option<TensorData> {
        Some(match datatype {
            Datatype::Bool => TensorData::Bool(Vec::with_capacity(capacity)),
            Datatype::Uint8 => TensorData::Uint8(Vec::with_capacity(capacity)),
            Datatype::Uint16 => TensorData::Uint16(Vec::with_capacity(capacity)),
            Datatype::Uint32 => TensorData::Uint32(Vec::with_capacity(capacity)),
            Datatype::Uint64 => TensorData::Uint64(Vec::with_capacity(capacity)),
            Datatype::Int8 => TensorData::Int8(Vec::with_capacity(capacity)),
            Datatype::Int16 => TensorData::Int16(Vec::with_capacity(capacity)),
            Datatype::Int32 => TensorData::Int32(Vec::with_capacity(capacity)),
            Datatype::Int64 => TensorData::Int64(Vec::with_capacity(capacity)),
            Datatype::Fp32 => TensorData::Fp32(Vec::with_capacity(capacity)),
            Datatype::Fp64 => TensorData::Fp64(Vec::with_capacity(capacity)),
            Datatype::Bytes => TensorData::Bytes(Vec::with_capacity(capacity)),
            Datatype::Fp16 | Datatype::Bf16 => return None,
        })
    }

    /// Appends `other`, which must have the same datatype (checked by the caller).
    pub(crate) fn extend_from(&mut self, other: &TensorData) -> bool {
        macro_rules! extend {
            ($($variant:ident),*) => {
                match (self, other) {
                    $((TensorData::$variant(a), TensorData::$variant(b)) => {
                        a.extend_from_slice(b);
                        true
                    })*
                    _ => false,
                }
            };
        }
        extend!(Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Fp32, Fp64, Bytes)
    }

    /// Elements `start..end` as a new tensor's data.
    pub(crate) fn slice(&self, start: usize, end: usize) -> TensorData {
        macro_rules! slice {
            ($($variant:ident),*) => {
                match self {
                    $(TensorData::$variant(v) => TensorData::$variant(v[start..end].to_vec()),)*
                }
            };
        }
        slice!(Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Fp32, Fp64, Bytes)
    }
}

/// A named tensor. `shape` multiplies out to `data.len()` once validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    /// Rows along the first dimension (1 for a scalar).
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }
}

/// Product of `shape`, or `None` when it overflows: a request cannot claim more elements
/// than fit in memory.
pub(crate) fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}
