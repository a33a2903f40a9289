//! Tensor data in JSON: parsing a (possibly nested) array straight into typed flat data
//! with its shape, without an intermediate `serde_json::Value`, and writing data back as
//! flat or nested arrays.

use std::fmt;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeSeq, Serializer};

use super::{with_vec, Datatype, TensorData};

/// Parses `json` (an array nested to any depth, or one scalar) as elements of `datatype`,
/// returning the flat data and the shape the nesting describes (`[]` for a scalar).
/// Floating-point types read `null` as NaN, the only way JSON can carry a missing value.
pub(crate) fn parse_nested(
    datatype: Datatype,
    json: &str,
) -> Result<(TensorData, Vec<usize>), String> {
    let mut data = TensorData::with_capacity(datatype, 0)
        .ok_or_else(|| format!("datatype {datatype} is not supported"))?;
    let mut shape = ShapeTracker::default();
    let mut deserializer = serde_json::Deserializer::from_str(json);
    Nested {
        out: &mut data,
        shape: &mut shape,
        depth: 0,
    }
    .deserialize(&mut deserializer)
    .and_then(|()| deserializer.end())
    .map_err(|e| e.to_string())?;
    Ok((data, shape.finish()))
}

/// The extent seen at each nesting depth, and the depth at which values sit.
#[derive(Default)]
struct ShapeTracker {
    dims: Vec<Option<usize>>,
    rank: Option<usize>,
}

impl ShapeTracker {
    fn finish(self) -> Vec<usize> {
        let rank = self.rank.unwrap_or(self.dims.len());
        self.dims
            .into_iter()
            .take(rank)
            .map(|d| d.unwrap_or(0))
            .collect()
    }
}

struct Nested<'a> {
    out: &'a mut TensorData,
    shape: &'a mut ShapeTracker,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Nested<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Nested<'_> {
    fn leaf<E: de::Error>(&mut self) -> Result<(), E> {
        match self.shape.rank {
            None => self.shape.rank = Some(self.depth),
            Some(rank) if rank != self.depth => {
                return Err(E::custom(
                    "arrays of different depths: the data is not a tensor",
                ))
            }
            Some(_) => {}
        }
        Ok(())
    }

    fn expected<E: de::Error>(&self, found: &str) -> E {
        let datatype = self.out.datatype();
        let wanted = match datatype {
            Datatype::Bool => "true or false",
            Datatype::Bytes => "strings",
            Datatype::Fp32 | Datatype::Fp64 => "numbers",
            _ => "integers",
        };
        E::custom(format!("{datatype} data must be {wanted}, found {found}"))
    }

    fn integer<E: de::Error>(mut self, value: i128) -> Result<(), E> {
        self.leaf()?;
        let datatype = self.out.datatype();
        macro_rules! push {
            ($v:expr, $t:ty) => {
                $v.push(
                    <$t>::try_from(value).map_err(|_| {
                        E::custom(format!("{value} is out of range for {datatype}"))
                    })?,
                )
            };
        }
        match &mut *self.out {
            TensorData::Uint8(v) => push!(v, u8),
            TensorData::Uint16(v) => push!(v, u16),
            TensorData::Uint32(v) => push!(v, u32),
            TensorData::Uint64(v) => push!(v, u64),
            TensorData::Int8(v) => push!(v, i8),
            TensorData::Int16(v) => push!(v, i16),
            TensorData::Int32(v) => push!(v, i32),
            TensorData::Int64(v) => push!(v, i64),
            TensorData::Fp32(v) => v.push(value as f32),
            TensorData::Fp64(v) => v.push(value as f64),
            TensorData::Bool(_) | TensorData::Bytes(_) => return Err(self.expected("a number")),
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for Nested<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} tensor data", self.out.datatype())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.shape.rank.is_some_and(|rank| self.depth >= rank) {
            return Err(de::Error::custom(
                "arrays of different depths: the data is not a tensor",
            ));
        }
        let mut count = 0usize;
        while seq
            .next_element_seed(Nested {
                out: &mut *self.out,
                shape: &mut *self.shape,
                depth: self.depth + 1,
            })?
            .is_some()
        {
            count += 1;
        }
        let dims = &mut self.shape.dims;
        if dims.len() <= self.depth {
            dims.resize(self.depth + 1, None);
        }
        match dims[self.depth] {
            None => dims[self.depth] = Some(count),
            Some(seen) if seen != count => {
                return Err(de::Error::custom(format!(
                    "ragged arrays: {seen} and {count} elements at depth {}",
                    self.depth + 1
                )))
            }
            Some(_) => {}
        }
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        self.integer(value.into())
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        self.integer(value.into())
    }

    fn visit_f64<E: de::Error>(mut self, value: f64) -> Result<(), E> {
        self.leaf()?;
        match &mut *self.out {
            TensorData::Fp32(v) => v.push(value as f32),
            TensorData::Fp64(v) => v.push(value),
            _ => return Err(self.expected(&format!("{value}"))),
        }
        Ok(())
    }

    fn visit_bool<E: de::Error>(mut self, value: bool) -> Result<(), E> {
        self.leaf()?;
        match &mut *self.out {
            TensorData::Bool(v) => v.push(value),
            _ => return Err(self.expected(&format!("{value}"))),
        }
        Ok(())
    }

    fn visit_str<E: de::Error>(mut self, value: &str) -> Result<(), E> {
        self.leaf()?;
        match &mut *self.out {
            TensorData::Bytes(v) => v.push(value.as_bytes().to_vec()),
            _ => return Err(self.expected("a string")),
        }
        Ok(())
    }

    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.leaf()?;
        match &mut *self.out {
            TensorData::Fp32(v) => v.push(f32::NAN),
            TensorData::Fp64(v) => v.push(f64::NAN),
            _ => return Err(self.expected("null")),
        }
        Ok(())
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _map: A) -> Result<(), A::Error> {
        Err(self.expected("an object"))
    }
}

/// Writes data as a flat JSON array. BYTES elements are written as strings (invalid
/// UTF-8 replaced), as KServe does; NaN is written as `null`.
impl Serialize for TensorData {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Elements {
            data: self,
            start: 0,
            end: self.len(),
        }
        .serialize(serializer)
    }
}

/// Elements `start..end` of `data`.
struct Elements<'a> {
    data: &'a TensorData,
    start: usize,
    end: usize,
}

impl Serialize for Elements<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.end - self.start))?;
        match self.data {
            TensorData::Bytes(v) => {
                for element in &v[self.start..self.end] {
                    seq.serialize_element(&String::from_utf8_lossy(element))?;
                }
            }
            other => with_vec!(other, v => for element in &v[self.start..self.end] {
                seq.serialize_element(element)?;
            }),
        }
        seq.end()
    }
}

/// Data written as arrays nested by `shape` (V1's `predictions` keep the tensor's nesting).
pub(crate) struct NestedJson<'a> {
    pub(crate) data: &'a TensorData,
    pub(crate) shape: &'a [usize],
}

impl Serialize for NestedJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Level {
            data: self.data,
            shape: self.shape,
            start: 0,
        }
        .serialize(serializer)
    }
}

struct Level<'a> {
    data: &'a TensorData,
    shape: &'a [usize],
    start: usize,
}

impl Serialize for Level<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.shape {
            [] => Elements {
                data: self.data,
                start: self.start,
                end: self.start + 1,
            }
            .serialize(serializer),
            [n] => Elements {
                data: self.data,
                start: self.start,
                end: self.start + n,
            }
            .serialize(serializer),
            [n, inner @ ..] => {
                let stride: usize = inner.iter().product();
                let mut seq = serializer.serialize_seq(Some(*n))?;
                for i in 0..*n {
                    seq.serialize_element(&Level {
                        data: self.data,
                        shape: inner,
                        start: self.start + i * stride,
                    })?;
                }
                seq.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_arrays_give_data_and_shape() {
        let (data, shape) = parse_nested(Datatype::Fp32, "[[1, 2.5], [null, -4]]").unwrap();
        assert_eq!(shape, vec![2, 2]);
        let TensorData::Fp32(v) = data else {
            panic!("{data:?}")
        };
        assert_eq!(v[..2], [1.0, 2.5]);
        assert!(v[2].is_nan());
        let (data, shape) = parse_nested(Datatype::Bytes, r#"["a", "bc"]"#).unwrap();
        assert_eq!(
            (data, shape),
            (
                TensorData::Bytes(vec![b"a".to_vec(), b"bc".to_vec()]),
                vec![2]
            )
        );
        assert_eq!(parse_nested(Datatype::Int64, "[]").unwrap().1, vec![0]);
        assert_eq!(
            parse_nested(Datatype::Bool, "true").unwrap().1,
            Vec::<usize>::new()
        );
    }

    #[test]
    fn wrong_values_are_named() {
        let e = parse_nested(Datatype::Fp32, r#"[1, "x"]"#).unwrap_err();
        assert!(
            e.contains("FP32 data must be numbers, found a string"),
            "{e}"
        );
        let e = parse_nested(Datatype::Uint8, "[256]").unwrap_err();
        assert!(e.contains("256 is out of range for UINT8"), "{e}");
        let e = parse_nested(Datatype::Int32, "[1.5]").unwrap_err();
        assert!(e.contains("INT32 data must be integers"), "{e}");
        assert!(parse_nested(Datatype::Fp64, "[[1, 2], [3]]")
            .unwrap_err()
            .contains("ragged"));
        assert!(parse_nested(Datatype::Fp64, "[[1], 2]")
            .unwrap_err()
            .contains("depths"));
        assert!(parse_nested(Datatype::Fp64, "[1, [2]]")
            .unwrap_err()
            .contains("depths"));
        assert!(parse_nested(Datatype::Fp16, "[1]").is_err());
    }

    #[test]
    fn writes_flat_and_nested() {
        let data = TensorData::Int64(vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(serde_json::to_string(&data).unwrap(), "[1,2,3,4,5,6]");
        let nested = NestedJson {
            data: &data,
            shape: &[3, 2],
        };
        assert_eq!(
            serde_json::to_string(&nested).unwrap(),
            "[[1,2],[3,4],[5,6]]"
        );
        let nan = TensorData::Fp64(vec![f64::NAN]);
        assert_eq!(serde_json::to_string(&nan).unwrap(), "[null]");
    }
}
