//! The README's walkthroughs as a newcomer reads them: a section's code blocks, each block's
//! commands (backslash continuations joined) and the output the README promises for each
//! (the `# ...` comment lines that follow a command). Tests run these commands as written
//! instead of copies of them, so a README that drifts from the code fails the build.

use std::path::PathBuf;

use crate::repo_root;

/// One command line of a code block and the output lines the README shows under it.
#[derive(Debug, Clone, PartialEq)]
pub struct Documented {
    pub command: String,
    pub expected: Vec<String>,
}

/// `README.md` at the repository root.
#[derive(Debug)]
pub struct Readme {
    text: String,
}

impl Readme {
    pub fn load() -> Readme {
        let path: PathBuf = repo_root().join("README.md");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        Readme { text }
    }

    /// The text under the `## <title>` heading, up to the next heading of that level.
    pub fn section(&self, title: &str) -> &str {
        let heading = format!("## {title}\n");
        let start = self
            .text
            .find(&heading)
            .unwrap_or_else(|| panic!("README.md has no section {heading:?}"))
            + heading.len();
        let rest = &self.text[start..];
        let end = rest.find("\n## ").map_or(rest.len(), |i| i + 1);
        &rest[..end]
    }
}

/// The bodies of the fenced code blocks of `text`, in order.
pub fn code_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            match current.take() {
                Some(body) => blocks.push(body.join("\n")),
                None => current = Some(Vec::new()),
            }
        } else if let Some(body) = current.as_mut() {
            body.push(line);
        }
    }
    blocks
}

/// The commands of a shell code block: continuation lines joined, and the `# ` comment lines
/// right after a command read as the output the README promises for it.
pub fn commands(block: &str) -> Vec<Documented> {
    let mut commands: Vec<Documented> = Vec::new();
    let mut pending = String::new();
    for line in block.lines() {
        let trimmed = line.trim();
        if pending.is_empty() {
            if let Some(comment) = trimmed.strip_prefix('#') {
                if let Some(last) = commands.last_mut() {
                    last.expected.push(comment.trim().to_string());
                }
                continue;
            }
            if trimmed.is_empty() {
                continue;
            }
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head.trim_end());
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                commands.push(Documented {
                    command: std::mem::take(&mut pending),
                    expected: Vec::new(),
                });
            }
        }
    }
    assert!(
        pending.is_empty(),
        "a command ends in a continuation: {pending:?}"
    );
    commands
}

/// The inline code spans (`` `...` ``) of `text` outside its fenced blocks, in order.
pub fn code_spans(text: &str) -> Vec<String> {
    let mut prose = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    prose
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| !span.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_continuations_and_reads_promised_output() {
        let block = "curl -s a \\\n  -d '{}'\n# {\"x\":1}\n\ncurl b\n";
        assert_eq!(
            commands(block),
            vec![
                Documented {
                    command: "curl -s a -d '{}'".to_string(),
                    expected: vec!["{\"x\":1}".to_string()],
                },
                Documented {
                    command: "curl b".to_string(),
                    expected: vec![],
                },
            ]
        );
    }

    #[test]
    fn finds_blocks_and_spans() {
        let text = "run:\n\n```sh\nserval dev\n```\nthen `ready 0/0` shows.\n";
        assert_eq!(code_blocks(text), vec!["serval dev".to_string()]);
        assert_eq!(code_spans(text), vec!["ready 0/0"]);
    }
}
