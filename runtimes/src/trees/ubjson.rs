//! A reader for the UBJSON subset that XGBoost writes (`model.ubj`), producing the same
//! `serde_json::Value` tree the JSON loader walks.
//!
//! Supported: null, booleans, no-op, int8/uint8/int16/int32/int64, float32/float64,
//! high-precision numbers (as strings), chars, strings, and arrays and objects in all
//! three forms (plain, counted `#`, and typed-and-counted `$…#`). All integers are big
//! endian. The reader never trusts a count further than the bytes left can back it, and
//! refuses nesting deeper than [`MAX_DEPTH`], so garbage input fails instead of
//! allocating without bound or overflowing the stack.

use serde_json::{Map, Number, Value};

use super::error::Problem;

/// Deeper nesting than any XGBoost model has (it uses about six levels).
const MAX_DEPTH: usize = 128;

/// Parses a whole UBJSON document.
pub(crate) fn parse(bytes: &[u8]) -> Result<Value, Problem> {
    let mut reader = Reader { bytes, pos: 0 };
    let marker = reader.marker()?;
    let value = reader.value(marker, 0)?;
    if reader.pos != bytes.len() {
        return Err(reader.problem("trailing bytes after the document"));
    }
    Ok(value)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn problem(&self, reason: &str) -> Problem {
        Problem::malformed(
            String::new(),
            format!("invalid UBJSON at byte {}: {reason}", self.pos),
        )
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Problem> {
        if n > self.remaining() {
            return Err(self.problem("unexpected end of data"));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array_of<const N: usize>(&mut self) -> Result<[u8; N], Problem> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, Problem> {
        Ok(self.array_of::<1>()?[0])
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// The next type marker, skipping no-ops.
    fn marker(&mut self) -> Result<u8, Problem> {
        loop {
            let m = self.byte()?;
            if m != b'N' {
                return Ok(m);
            }
        }
    }

    /// An integer of the type `marker` names, or `None` if it names no integer type.
    fn int(&mut self, marker: u8) -> Result<Option<i64>, Problem> {
        Ok(Some(match marker {
            b'i' => i64::from(i8::from_be_bytes(self.array_of()?)),
            b'U' => i64::from(self.byte()?),
            b'I' => i64::from(i16::from_be_bytes(self.array_of()?)),
            b'l' => i64::from(i32::from_be_bytes(self.array_of()?)),
            b'L' => i64::from_be_bytes(self.array_of()?),
            _ => return Ok(None),
        }))
    }

    /// A length or count: an integer with its own marker, non-negative, and no larger
    /// than `per_item` bytes each could still fit in what is left.
    fn length(&mut self, per_item: usize) -> Result<usize, Problem> {
        let marker = self.byte()?;
        let n = self
            .int(marker)?
            .ok_or_else(|| self.problem("expected an integer length"))?;
        let n = usize::try_from(n).map_err(|_| self.problem("negative length"))?;
        if n.saturating_mul(per_item.max(1)) > self.remaining() {
            return Err(self.problem("length exceeds the data left"));
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<String, Problem> {
        let n = self.length(1)?;
        let raw = self.take(n)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| self.problem("string is not UTF-8"))
    }

    fn value(&mut self, marker: u8, depth: usize) -> Result<Value, Problem> {
        if let Some(i) = self.int(marker)? {
            return Ok(Value::from(i));
        }
        Ok(match marker {
            b'Z' => Value::Null,
            b'T' => Value::Bool(true),
            b'F' => Value::Bool(false),
            b'd' => float(f64::from(f32::from_be_bytes(self.array_of()?))),
            b'D' => float(f64::from_be_bytes(self.array_of()?)),
            b'C' => Value::String(char::from(self.byte()?).to_string()),
            b'S' | b'H' => Value::String(self.string()?),
            b'[' => self.array(depth + 1)?,
            b'{' => self.object(depth + 1)?,
            _ => return Err(self.problem(&format!("unknown type marker 0x{marker:02x}"))),
        })
    }

    /// The optional `$type` and `#count` after an opening bracket.
    fn container_header(&mut self) -> Result<(Option<u8>, Option<usize>), Problem> {
        let mut ty = None;
        if self.peek() == Some(b'$') {
            self.pos += 1;
            let t = self.byte()?;
            if !matches!(
                t,
                b'i' | b'U' | b'I' | b'l' | b'L' | b'd' | b'D' | b'C' | b'S'
            ) {
                // Zero-width element types would let a tiny file claim huge counts.
                return Err(self.problem("unsupported typed-container element type"));
            }
            if self.peek() != Some(b'#') {
                return Err(self.problem("typed container without a count"));
            }
            ty = Some(t);
        }
        let count = if self.peek() == Some(b'#') {
            self.pos += 1;
            Some(self.length(1)?)
        } else {
            None
        };
        Ok((ty, count))
    }

    fn array(&mut self, depth: usize) -> Result<Value, Problem> {
        if depth > MAX_DEPTH {
            return Err(self.problem("nesting too deep"));
        }
        let (ty, count) = self.container_header()?;
        let mut items = Vec::new();
        match count {
            Some(n) => {
                items.reserve(n);
                for _ in 0..n {
                    let marker = match ty {
                        Some(t) => t,
                        None => self.marker()?,
                    };
                    items.push(self.value(marker, depth)?);
                }
            }
            None => loop {
                let marker = self.marker()?;
                if marker == b']' {
                    break;
                }
                items.push(self.value(marker, depth)?);
            },
        }
        Ok(Value::Array(items))
    }

    fn object(&mut self, depth: usize) -> Result<Value, Problem> {
        if depth > MAX_DEPTH {
            return Err(self.problem("nesting too deep"));
        }
        let (ty, count) = self.container_header()?;
        let mut map = Map::new();
        match count {
            Some(n) => {
                for _ in 0..n {
                    let key = self.string()?;
                    let marker = match ty {
                        Some(t) => t,
                        None => self.marker()?,
                    };
                    map.insert(key, self.value(marker, depth)?);
                }
            }
            None => loop {
                while self.peek() == Some(b'N') {
                    self.pos += 1;
                }
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    break;
                }
                let key = self.string()?;
                let marker = self.marker()?;
                map.insert(key, self.value(marker, depth)?);
            },
        }
        Ok(Value::Object(map))
    }
}

/// JSON numbers cannot be NaN or infinite; keep those as the names [`super::doc`] reads.
fn float(f: f64) -> Value {
    match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => Value::String("NaN".into()),
        None if f > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_typed_arrays_and_objects() {
        // {"a": [$d#U2 1.5f32 -2f32], "b": "hi", "c": [i1 U200 ]}
        let mut doc = vec![b'{', b'U', 1, b'a', b'[', b'$', b'd', b'#', b'U', 2];
        doc.extend(1.5f32.to_be_bytes());
        doc.extend((-2.0f32).to_be_bytes());
        doc.extend([b'U', 1, b'b', b'S', b'U', 2, b'h', b'i']);
        doc.extend([b'U', 1, b'c', b'[', b'i', 1, b'U', 200, b']', b'}']);
        let v = parse(&doc).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a": [1.5, -2.0], "b": "hi", "c": [1, 200]})
        );
    }

    #[test]
    fn rejects_counts_the_data_cannot_back() {
        let doc = [
            b'[', b'$', b'L', b'#', b'L', 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ];
        assert!(parse(&doc).is_err());
        let doc = [b'[', b'#', b'l', 0x7f, 0xff, 0xff, 0xff];
        assert!(parse(&doc).is_err());
    }

    #[test]
    fn rejects_deep_nesting_without_overflowing() {
        let doc = vec![b'['; 100_000];
        assert!(parse(&doc).is_err());
    }
}
