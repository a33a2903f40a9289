//! Where the node model cache keeps a model: one directory per storage URI, named the same
//! by the storage initializer that fills it and by the controller that mounts it.

/// The entry directory's name for `uri`: a readable tail of the URI and a hash of all of it
/// (FNV-1a, 64 bits), e.g. `iris-v1-5f0c2a9d81e4b3c7`. The query string never reaches
/// the name.
pub fn entry_name(uri: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in uri.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let without_query = uri.split(['?', '#']).next().unwrap_or(uri);
    // User info (`https://user:password@host/...`) never reaches a name.
    let without_query = match without_query.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}/{path}")
        }
        None => without_query.to_string(),
    };
    let tail: String = without_query
        .rsplit(['/', ':'])
        .filter(|s| !s.is_empty())
        .take(2)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("-")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let tail: String = tail.trim_matches(['-', '.']).chars().take(48).collect();
    if tail.is_empty() {
        format!("{hash:016x}")
    } else {
        format!("{tail}-{hash:016x}")
    }
}

/// The model directory inside an entry (beside the entry's lock and bookkeeping).
pub const MODEL_DIR: &str = "model";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_readable_and_distinct() {
        // Pinned: the controller and storage initializers of other versions must agree.
        assert_eq!(
            entry_name("s3://models/iris/v1"),
            "iris-v1-09d3eebdda64be41"
        );
        assert_ne!(entry_name("s3://a/iris/v1"), entry_name("s3://b/iris/v1"));
        assert_eq!(
            entry_name("hf://org/Model:main"),
            entry_name("hf://org/Model:main")
        );
        let with_password = entry_name("https://user:hunter2@host/m.bin");
        assert!(!with_password.contains("hunter2"), "{with_password}");
        let signed = entry_name("https://host/m.bin?X-Amz-Signature=secret");
        assert!(
            !signed.contains("secret") && !signed.contains("signature"),
            "{signed}"
        );
        assert!(entry_name("/").chars().all(|c| c.is_ascii_hexdigit()));
    }
}
