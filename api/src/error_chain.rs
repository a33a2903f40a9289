//! An error as one line with its causes, for the proxies' upstream errors, where the cause
//! holds the useful part ("client error (Connect): tcp connect error: Connection refused").

/// `error`'s message followed by each cause's, joined by `": "`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("client error")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn joins_every_cause() {
        let error = Outer(std::io::Error::other("connection refused"));
        assert_eq!(error_chain(&error), "client error: connection refused");
    }
}
