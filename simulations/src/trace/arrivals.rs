//! The simplest trace: one arrival time in seconds per line, first column; a header line
//! and further columns are ignored, as are blank lines and `#` comments.

use std::path::Path;

use super::{span_of, Request, ServiceModel, ServiceTrace};
use crate::error::SimError;

pub(super) fn read(
    path: &Path,
    text: &str,
    model: &ServiceModel,
) -> Result<(Vec<ServiceTrace>, f64), SimError> {
    let mut requests = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let first = line.split(',').next().unwrap_or("").trim();
        let at: f64 = match first.parse() {
            Ok(at) => at,
            // A header on the first line is fine; text anywhere else is not.
            Err(_) if index == 0 => continue,
            Err(_) => {
                return Err(SimError::parse(
                    path,
                    index + 1,
                    format!("expected an arrival time in seconds, found {first:?}"),
                ))
            }
        };
        if !at.is_finite() || at < 0.0 {
            return Err(SimError::parse(
                path,
                index + 1,
                format!("arrival time {first} is not a non-negative number"),
            ));
        }
        requests.push(Request {
            at,
            service_s: model.fixed_s,
            first_token_s: 0.0,
            output_tokens: 0,
            prompt_tokens: 0,
        });
    }
    let span = span_of(&requests);
    Ok((
        vec![ServiceTrace {
            name: "service".into(),
            requests,
        }],
        span,
    ))
}
