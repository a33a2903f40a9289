//! `serval validate`: offline checking of manifest files, one line per problem.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serval_api::manifest::parse_documents;

/// Expands directories into their YAML files, sorted, keeping files as given. Shared with
/// `serval dev`, which reads the same arguments.
pub(crate) fn manifest_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .is_some_and(|ext| ext == "yaml" || ext == "yml")
                })
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Checks every document of every file; prints problems and a summary.
pub(crate) fn run(paths: &[PathBuf]) -> ExitCode {
    let files = match manifest_files(paths) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut checked, mut invalid) = (0usize, 0usize);
    for file in &files {
        let (c, i) = check_file(file);
        checked += c;
        invalid += i;
    }
    println!("{checked} document(s) checked, {invalid} invalid");
    if invalid == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Returns (documents checked, documents invalid) for one file.
fn check_file(file: &Path) -> (usize, usize) {
    let shown = file.display();
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{shown}: cannot read: {e}");
            return (1, 1);
        }
    };
    let documents = match parse_documents(&text) {
        Ok(documents) => documents,
        Err(e) => {
            eprintln!("{shown}: {e}");
            return (1, 1);
        }
    };
    let mut invalid = 0;
    for doc in &documents {
        let what = doc.describe();
        for warning in &doc.warnings {
            eprintln!("{shown}: {what}: warning: {warning}");
        }
        for error in &doc.errors {
            eprintln!("{shown}: {what}: {error}");
        }
        if doc.errors.is_empty() {
            println!("{shown}: {what}: valid");
        } else {
            invalid += 1;
        }
    }
    (documents.len(), invalid)
}
