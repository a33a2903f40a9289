//! Casting numeric tensors to the datatype a model takes. Clients routinely send FP64 to an
//! FP32 model (numpy's default) or integers to a float model; the cast is what the
//! client's own framework would do, and BOOL or BYTES never cast to or from numbers.

use super::{Datatype, TensorData};

impl TensorData {
    /// This data as `target`, or `None` when either side is not numeric.
    pub(crate) fn cast(self, target: Datatype) -> Option<TensorData> {
        if self.datatype() == target {
            return Some(self);
        }
        if !self.datatype().is_numeric() || !target.is_numeric() {
            return None;
        }
        macro_rules! from_any {
            ($data:expr, $t:ty) => {
                match $data {
                    TensorData::Uint8(v) => v.into_iter().map(|x| x as $t).collect(),
                    TensorData::Uint16(v) => v.into_iter().map(|x| x as $t).collect(),
                    TensorData::Uint32(v) => v.into_iter().map(|x| x as $t).collect(),
                    TensorData::Uint64(v) => v.into_iter().map(|x| x as $t).collect(),
                    TensorData::Int8(v) => v.into_iter().map(|x| x as $t).collect(),
                    TensorData::Int16(v) => v.into_iter().map(|x| x as $t).collect(),
                    TensorData::Int32(v) => v.into_iter().map(|x| x as $t).collect(),
                    TensorData::Int64(v) => v.into_iter().map(|x| x as $t).collect(),
                    TensorData::Fp32(v) => v.into_iter().map(|x| x as $t).collect(),
                    TensorData::Fp64(v) => v.into_iter().map(|x| x as $t).collect(),
                    TensorData::Bool(_) | TensorData::Bytes(_) => return None,
                }
            };
        }
        Some(match target {
            Datatype::Uint8 => TensorData::Uint8(from_any!(self, u8)),
            Datatype::Uint16 => TensorData::Uint16(from_any!(self, u16)),
            Datatype::Uint32 => TensorData::Uint32(from_any!(self, u32)),
            Datatype::Uint64 => TensorData::Uint64(from_any!(self, u64)),
            Datatype::Int8 => TensorData::Int8(from_any!(self, i8)),
            Datatype::Int16 => TensorData::Int16(from_any!(self, i16)),
            Datatype::Int32 => TensorData::Int32(from_any!(self, i32)),
            Datatype::Int64 => TensorData::Int64(from_any!(self, i64)),
            Datatype::Fp32 => TensorData::Fp32(from_any!(self, f32)),
            Datatype::Fp64 => TensorData::Fp64(from_any!(self, f64)),
            Datatype::Bool | Datatype::Bytes | Datatype::Fp16 | Datatype::Bf16 => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_cast_and_others_do_not() {
        let data = TensorData::Fp64(vec![1.5, -2.0]);
        assert_eq!(
            data.clone().cast(Datatype::Fp32),
            Some(TensorData::Fp32(vec![1.5, -2.0]))
        );
        assert_eq!(
            TensorData::Int64(vec![3]).cast(Datatype::Fp64),
            Some(TensorData::Fp64(vec![3.0]))
        );
        assert_eq!(data.cast(Datatype::Bytes), None);
        assert_eq!(TensorData::Bool(vec![true]).cast(Datatype::Fp32), None);
    }
}
