//! A cursor over a parsed JSON (or UBJSON) document that remembers where it is, so every
//! complaint about a model file names the exact field, e.g.
//! `learner.gradient_booster.model.trees[3].left_children: expected array`.

use serde_json::Value;

use super::error::Problem;

/// A value inside a document together with its path from the root.
#[derive(Debug, Clone)]
pub(crate) struct At<'a> {
    value: &'a Value,
    path: String,
}

impl<'a> At<'a> {
    pub(crate) fn root(value: &'a Value) -> Self {
        At {
            value,
            path: String::new(),
        }
    }

    /// A complaint about this value.
    pub(crate) fn problem(&self, reason: impl Into<String>) -> Problem {
        Problem::malformed(self.path.clone(), reason)
    }

    /// The field `key` of this object; an error if this is not an object or lacks it.
    pub(crate) fn get(&self, key: &str) -> Result<At<'a>, Problem> {
        self.opt(key)?
            .ok_or_else(|| self.problem(format!("missing field `{key}`")))
    }

    /// The field `key` of this object, if present.
    pub(crate) fn opt(&self, key: &str) -> Result<Option<At<'a>>, Problem> {
        let Value::Object(map) = self.value else {
            return Err(self.problem(format!("expected object, found {}", kind(self.value))));
        };
        Ok(map.get(key).map(|value| At {
            value,
            path: if self.path.is_empty() {
                key.to_owned()
            } else {
                format!("{}.{key}", self.path)
            },
        }))
    }

    fn array(&self) -> Result<&'a [Value], Problem> {
        match self.value {
            Value::Array(items) => Ok(items),
            other => Err(self.problem(format!("expected array, found {}", kind(other)))),
        }
    }

    /// The elements of this array, each with its own path.
    pub(crate) fn items(&self) -> Result<Vec<At<'a>>, Problem> {
        Ok(self
            .array()?
            .iter()
            .enumerate()
            .map(|(i, value)| At {
                value,
                path: format!("{}[{i}]", self.path),
            })
            .collect())
    }

    pub(crate) fn element_problem(&self, i: usize, reason: impl Into<String>) -> Problem {
        Problem::malformed(format!("{}[{i}]", self.path), reason)
    }

    pub(crate) fn str(&self) -> Result<&'a str, Problem> {
        match self.value {
            Value::String(s) => Ok(s),
            other => Err(self.problem(format!("expected string, found {}", kind(other)))),
        }
    }

    /// An array of numbers, as `f32` (XGBoost stores every float as `f32`).
    pub(crate) fn f32s(&self) -> Result<Vec<f32>, Problem> {
        self.array()?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                float(v)
                    .map(|f| f as f32)
                    .ok_or_else(|| self.element_problem(i, "expected number"))
            })
            .collect()
    }

    /// An array of integers.
    pub(crate) fn ints(&self) -> Result<Vec<i64>, Problem> {
        self.array()?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_i64()
                    .ok_or_else(|| self.element_problem(i, "expected integer"))
            })
            .collect()
    }

    /// An array of flags, written as booleans or as 0/1.
    pub(crate) fn flags(&self) -> Result<Vec<bool>, Problem> {
        self.array()?
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::Bool(b) => Ok(*b),
                _ => match v.as_i64() {
                    Some(0) => Ok(false),
                    Some(1) => Ok(true),
                    _ => Err(self.element_problem(i, "expected boolean or 0/1")),
                },
            })
            .collect()
    }

    /// A non-negative integer parameter; XGBoost writes these as strings (`"3"`).
    pub(crate) fn count_param(&self) -> Result<usize, Problem> {
        let parsed = match self.value {
            Value::String(s) => s.trim().parse::<u64>().ok(),
            other => other.as_u64(),
        };
        parsed
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| self.problem("expected a non-negative integer"))
    }

    /// A float or list of floats; XGBoost ≥ 3.1 writes `"[5E-1]"` or `"[0E0,0E0,0E0]"`,
    /// older versions `"5E-1"`.
    pub(crate) fn float_list_param(&self) -> Result<Vec<f32>, Problem> {
        let bad = || self.problem("expected a number or a list of numbers");
        match self.value {
            Value::String(s) => {
                let s = s.trim();
                let inner = s
                    .strip_prefix('[')
                    .and_then(|rest| rest.strip_suffix(']'))
                    .unwrap_or(s);
                inner
                    .split(',')
                    .map(|part| part.trim().parse::<f32>().map_err(|_| bad()))
                    .collect()
            }
            Value::Array(_) => self.f32s(),
            other => float(other).map(|f| vec![f as f32]).ok_or_else(bad),
        }
    }
}

/// A number, or one of the names that writers use for the values JSON cannot spell.
fn float(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" | "nan" => Some(f64::NAN),
            "Infinity" | "inf" => Some(f64::INFINITY),
            "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
