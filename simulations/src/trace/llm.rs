//! Readers for the two LLM traces: Azure's 2023 inference trace (CSV with wall-clock
//! timestamps) and Mooncake's conversation trace (JSONL with millisecond offsets).

use std::path::Path;

use super::{span_of, Request, ServiceModel, ServiceTrace};
use crate::error::SimError;

/// `TIMESTAMP,ContextTokens,GeneratedTokens`, timestamps like `2023-11-16 18:15:46.6805900`.
pub(super) fn azure(
    path: &Path,
    text: &str,
    model: &ServiceModel,
) -> Result<(Vec<ServiceTrace>, f64), SimError> {
    let mut rows = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (index == 0 && line.starts_with("TIMESTAMP")) {
            continue;
        }
        let bad = |message: String| SimError::parse(path, index + 1, message);
        let mut fields = line.split(',');
        let (Some(stamp), Some(context), Some(generated)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(bad(
                "expected TIMESTAMP,ContextTokens,GeneratedTokens".into()
            ));
        };
        let at =
            parse_timestamp(stamp.trim()).ok_or_else(|| bad(format!("bad timestamp {stamp:?}")))?;
        let context: u32 = context
            .trim()
            .parse()
            .map_err(|_| bad(format!("bad ContextTokens {context:?}")))?;
        let generated: u32 = generated
            .trim()
            .parse()
            .map_err(|_| bad(format!("bad GeneratedTokens {generated:?}")))?;
        rows.push((at, context, generated));
    }
    let start = rows.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
    let requests: Vec<Request> = rows
        .into_iter()
        .map(|(at, prompt, output)| model.llm(prompt, output, at - start))
        .collect();
    Ok(one_service("llm", requests))
}

#[derive(serde::Deserialize)]
struct MooncakeLine {
    timestamp: f64,
    input_length: u32,
    output_length: u32,
}

/// One JSON object per line: `timestamp` in ms, `input_length`, `output_length`.
pub(super) fn mooncake(
    path: &Path,
    text: &str,
    model: &ServiceModel,
) -> Result<(Vec<ServiceTrace>, f64), SimError> {
    let mut requests = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: MooncakeLine = serde_json::from_str(line)
            .map_err(|e| SimError::parse(path, index + 1, e.to_string()))?;
        if !row.timestamp.is_finite() || row.timestamp < 0.0 {
            return Err(SimError::parse(path, index + 1, "negative timestamp"));
        }
        requests.push(model.llm(row.input_length, row.output_length, row.timestamp / 1000.0));
    }
    Ok(one_service("llm", requests))
}

fn one_service(name: &str, requests: Vec<Request>) -> (Vec<ServiceTrace>, f64) {
    let span = span_of(&requests);
    (
        vec![ServiceTrace {
            name: name.into(),
            requests,
        }],
        span,
    )
}

/// Seconds since the Unix epoch of `YYYY-MM-DD HH:MM:SS[.fraction]` (UTC).
fn parse_timestamp(stamp: &str) -> Option<f64> {
    let (date, time) = stamp.split_once([' ', 'T'])?;
    let mut d = date.split('-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    let mut t = time.split(':');
    let hour: f64 = t.next()?.parse().ok()?;
    let minute: f64 = t.next()?.parse().ok()?;
    let second: f64 = t.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || !second.is_finite() {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + hour * 3600.0 + minute * 60.0 + second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_bad_lines() {
        let a = parse_timestamp("2023-11-16 18:15:46.5").expect("parses");
        let b = parse_timestamp("2023-11-17 00:00:00").expect("parses");
        assert!((b - a - (5.0 * 3600.0 + 44.0 * 60.0 + 13.5)).abs() < 1e-6);
        assert_eq!(parse_timestamp("1970-01-01 00:00:01"), Some(1.0));
        let text = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.0,10,x\n";
        let err = azure(Path::new("t.csv"), text, &ServiceModel::default()).unwrap_err();
        assert_eq!(err.to_string(), "t.csv:2: bad GeneratedTokens \"x\"");
        let err = mooncake(
            Path::new("m.jsonl"),
            "{\"timestamp\": 1}\n",
            &ServiceModel::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("m.jsonl:1: missing field"),
            "{err}"
        );
    }

    #[test]
    fn service_time_is_prefill_plus_decode() {
        let model = ServiceModel::default();
        let text = "{\"timestamp\": 1500, \"input_length\": 4000, \"output_length\": 80}\n";
        let (services, span) = mooncake(Path::new("m"), text, &model).expect("parses");
        let r = services[0].requests[0];
        assert_eq!(
            (r.at, r.first_token_s, r.service_s, span),
            (1.5, 1.0, 3.0, 2.0)
        );
    }
}
