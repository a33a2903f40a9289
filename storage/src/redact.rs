//! Keeping credentials and signed URLs out of every message: query strings and user info
//! are cut from URLs, and the values of secret environment variables are masked.

/// Environment variables whose values are credentials.
pub(crate) const SECRET_VARIABLES: [&str; 10] = [
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SESSION_TOKEN",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZ_CLIENT_SECRET",
    "AZURE_CLIENT_SECRET",
    "AZURE_STORAGE_SAS_TOKEN",
    "GIT_PASSWORD",
];

/// Masks known secret values in text from other libraries before it is shown.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 4).collect();
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self { secrets }
    }

    /// `text` with URL queries and user info cut, secrets masked, and on one line.
    pub fn clean(&self, text: &str) -> String {
        let mut out = strip_url_secrets(text);
        for secret in &self.secrets {
            out = out.replace(secret.as_str(), "***");
        }
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// Cuts the query string and user info from every `http(s)://` URL in `text`.
pub(crate) fn strip_url_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = find_url(rest) {
        out.push_str(&rest[..start]);
        let url_and_more = &rest[start..];
        let end = url_and_more
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')'))
            .unwrap_or(url_and_more.len());
        out.push_str(&clean_url(&url_and_more[..end]));
        rest = &url_and_more[end..];
    }
    out.push_str(rest);
    out
}

fn find_url(text: &str) -> Option<usize> {
    let http = text.find("http://");
    let https = text.find("https://");
    match (http, https) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn clean_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let without_query = rest.split(['?', '#']).next().unwrap_or(rest);
    let (authority, path) = match without_query.find('/') {
        Some(i) => without_query.split_at(i),
        None => (without_query, ""),
    };
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let mut cleaned = format!("{scheme}://{host}{path}");
    if without_query.len() < rest.len() {
        cleaned.push_str("?…");
    }
    cleaned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_urls_user_info_and_secrets_are_cut() {
        let redactor = Redactor::new(["wJalrXUtnFEMI/K7MDENG".to_string(), "ab".to_string()]);
        let text = "GET https://user:pw@bucket.s3.amazonaws.com/model.bin?X-Amz-Signature=deadbeef&X-Amz-Credential=AKIA failed:\n key wJalrXUtnFEMI/K7MDENG refused (ab)";
        let cleaned = redactor.clean(text);
        assert_eq!(
            cleaned,
            "GET https://bucket.s3.amazonaws.com/model.bin?… failed: key *** refused (ab)"
        );
    }
}
