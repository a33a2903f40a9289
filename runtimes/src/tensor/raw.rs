//! The raw tensor encoding shared by the binary tensor extension (REST) and
//! `raw_input_contents`/`raw_output_contents` (gRPC): flat row-major little-endian
//! elements; BOOL one byte each; BYTES each a 4-byte little-endian length and the bytes.

use super::{Datatype, TensorData};

/// Decodes `bytes` as elements of `datatype`; the error says what is wrong with them.
pub(crate) fn decode(datatype: Datatype, bytes: &[u8]) -> Result<TensorData, String> {
    macro_rules! numbers {
        ($variant:ident, $t:ty) => {{
            const SIZE: usize = std::mem::size_of::<$t>();
            if bytes.len() % SIZE != 0 {
                return Err(format!(
                    "{} bytes of raw {} data is not a whole number of {SIZE}-byte elements",
                    bytes.len(),
                    datatype
                ));
            }
            TensorData::$variant(
                bytes
                    .chunks_exact(SIZE)
                    .map(|c| {
                        let mut le = [0u8; SIZE];
                        le.copy_from_slice(c);
                        <$t>::from_le_bytes(le)
                    })
                    .collect(),
            )
        }};
    }
    Ok(match datatype {
        Datatype::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
        Datatype::Uint8 => TensorData::Uint8(bytes.to_vec()),
        Datatype::Uint16 => numbers!(Uint16, u16),
        Datatype::Uint32 => numbers!(Uint32, u32),
        Datatype::Uint64 => numbers!(Uint64, u64),
        Datatype::Int8 => TensorData::Int8(bytes.iter().map(|&b| b as i8).collect()),
        Datatype::Int16 => numbers!(Int16, i16),
        Datatype::Int32 => numbers!(Int32, i32),
        Datatype::Int64 => numbers!(Int64, i64),
        Datatype::Fp32 => numbers!(Fp32, f32),
        Datatype::Fp64 => numbers!(Fp64, f64),
        Datatype::Bytes => TensorData::Bytes(decode_bytes(bytes)?),
        Datatype::Fp16 | Datatype::Bf16 => {
            return Err(format!("datatype {datatype} is not supported"))
        }
    })
}

fn decode_bytes(mut bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut elements = Vec::new();
    while !bytes.is_empty() {
        let Some((len, rest)) = bytes.split_first_chunk::<4>() else {
            return Err("raw BYTES data ends inside an element's 4-byte length".into());
        };
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(format!(
                "raw BYTES element of {len} bytes runs past the end of the data"
            ));
        }
        elements.push(rest[..len].to_vec());
        bytes = &rest[len..];
    }
    Ok(elements)
}

/// Bytes [`encode`] writes for `data`.
pub(crate) fn encoded_len(data: &TensorData) -> usize {
    match data {
        TensorData::Bool(v) => v.len(),
        TensorData::Bytes(v) => v.iter().map(|e| 4 + e.len()).sum(),
        other => other.len() * element_size(other.datatype()),
    }
}

fn element_size(datatype: Datatype) -> usize {
    match datatype {
        Datatype::Bool | Datatype::Uint8 | Datatype::Int8 => 1,
        Datatype::Uint16 | Datatype::Int16 | Datatype::Fp16 | Datatype::Bf16 => 2,
        Datatype::Uint32 | Datatype::Int32 | Datatype::Fp32 => 4,
        Datatype::Uint64 | Datatype::Int64 | Datatype::Fp64 => 8,
        Datatype::Bytes => 0,
    }
}

/// Appends `data`'s raw encoding to `out`.
pub(crate) fn encode(data: &TensorData, out: &mut Vec<u8>) {
    out.reserve(encoded_len(data));
    macro_rules! numbers {
        ($v:expr) => {
            for x in $v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match data {
        TensorData::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        TensorData::Uint8(v) => out.extend_from_slice(v),
        TensorData::Uint16(v) => numbers!(v),
        TensorData::Uint32(v) => numbers!(v),
        TensorData::Uint64(v) => numbers!(v),
        TensorData::Int8(v) => out.extend(v.iter().map(|&x| x as u8)),
        TensorData::Int16(v) => numbers!(v),
        TensorData::Int32(v) => numbers!(v),
        TensorData::Int64(v) => numbers!(v),
        TensorData::Fp32(v) => numbers!(v),
        TensorData::Fp64(v) => numbers!(v),
        TensorData::Bytes(v) => {
            for element in v {
                // Elements over 4 GiB cannot be in a request under the body limit.
                out.extend_from_slice(&(element.len() as u32).to_le_bytes());
                out.extend_from_slice(element);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_datatype() {
        let samples = [
            TensorData::Bool(vec![true, false]),
            TensorData::Uint8(vec![0, 255]),
            TensorData::Uint16(vec![1, 65535]),
            TensorData::Uint32(vec![7]),
            TensorData::Uint64(vec![u64::MAX]),
            TensorData::Int8(vec![-128, 127]),
            TensorData::Int16(vec![-2]),
            TensorData::Int32(vec![i32::MIN]),
            TensorData::Int64(vec![-1, 1 << 40]),
            TensorData::Fp32(vec![1.5, -0.25]),
            TensorData::Fp64(vec![std::f64::consts::PI]),
            TensorData::Bytes(vec![b"abc".to_vec(), Vec::new()]),
        ];
        for data in samples {
            let mut raw = Vec::new();
            encode(&data, &mut raw);
            assert_eq!(raw.len(), encoded_len(&data));
            assert_eq!(decode(data.datatype(), &raw).unwrap(), data);
        }
    }

    #[test]
    fn rejects_partial_elements() {
        assert!(decode(Datatype::Fp32, &[0, 0, 0]).is_err());
        assert!(decode(Datatype::Bytes, &[5, 0, 0, 0, b'a']).is_err());
        assert!(decode(Datatype::Bytes, &[1, 0]).is_err());
        assert!(decode(Datatype::Fp16, &[0, 0]).is_err());
    }
}
