//! `serval storage-init`: KServe's storage initializer, in Rust. Takes `SRC DEST` pairs as
//! KServe's init container does (`storageUri` and each of `storageUris`), or, with
//! `--cache-dir`, fills the node model cache and prints where each model is.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use serval_storage::{
    fetch_uri, source, Environment, FetchOptions, FetchReport, ModelCache, ProgressStyle,
    StorageUri,
};

#[derive(clap::Args, Debug)]
pub(crate) struct StorageInitArgs {
    /// `SRC DEST` pairs: a storage URI (s3://, gs://, az://, https://, hf://, pvc://,
    /// file:// or a path) and the directory to fill. With --cache-dir: storage URIs only.
    #[arg(required = true, value_name = "SRC DEST")]
    args: Vec<String>,
    /// Fill this node model cache instead (one directory per URI, shared by every pod on
    /// the node), and print each model's directory in it.
    #[arg(long, env = "SERVAL_MODEL_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Evict least-recently-used cache entries past this size (e.g. 200Gi).
    #[arg(long, value_parser = parse_size)]
    cache_max_size: Option<u64>,
    /// Reads in flight at once, over all files.
    #[arg(long, default_value_t = 16)]
    parallel: usize,
    /// Files larger than this are read as parallel ranges of this size (e.g. 16Mi).
    #[arg(long, default_value = "16Mi", value_parser = parse_size)]
    chunk_size: u64,
    /// Retries of a read after a transient error (a dropped connection, a server error).
    #[arg(long, default_value_t = 5)]
    retries: u32,
    /// Where `pvc://<claim>/<path>` claims are mounted.
    #[arg(long, env = "SERVAL_PVC_ROOT", default_value = "/mnt/pvc")]
    pvc_root: PathBuf,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
}

pub(crate) async fn run(args: StorageInitArgs) -> anyhow::Result<()> {
    let env = Environment::from_process();
    let progress = if args.quiet {
        ProgressStyle::Quiet
    } else if std::io::stderr().is_terminal() {
        ProgressStyle::Bar
    } else {
        ProgressStyle::Lines {
            every: Duration::from_secs(5),
        }
    };
    let options = FetchOptions {
        parallel: args.parallel.max(1),
        chunk_size: args.chunk_size,
        retries: args.retries,
        progress,
    };
    let source_options = source::SourceOptions::default();
    match &args.cache_dir {
        Some(dir) => {
            let cache = ModelCache::new(dir, args.cache_max_size);
            let mut filled = Vec::new();
            for text in &args.args {
                let uri = StorageUri::parse(text, &args.pvc_root)?;
                let fill = cache.fill(&uri, &env, &source_options, &options).await?;
                eprintln!("{}", summary(&uri, &fill.model_dir, &fill.report));
                println!("{}", fill.model_dir.display());
                filled.push(fill.model_dir);
            }
            // After every fill, so no model this pod needs is evicted for another.
            for entry in cache.evict(&filled).await {
                eprintln!("serval storage-init: evicted {entry} from the model cache");
            }
        }
        None => {
            if !args.args.len().is_multiple_of(2) {
                bail!(
                    "expected SRC DEST pairs, got {} arguments (use --cache-dir to name sources only)",
                    args.args.len()
                );
            }
            for pair in args.args.chunks(2) {
                let uri = StorageUri::parse(&pair[0], &args.pvc_root)?;
                let dest = PathBuf::from(&pair[1]);
                let report = fetch_uri(&uri, &env, &source_options, &dest, &options).await?;
                eprintln!("{}", summary(&uri, &dest, &report));
            }
        }
    }
    Ok(())
}

fn summary(uri: &StorageUri, dest: &std::path::Path, report: &FetchReport) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    if report.already_complete {
        return format!(
            "serval storage-init: {uri} -> {}: already complete ({} files, {:.1} MiB)",
            dest.display(),
            report.files,
            mib(report.bytes)
        );
    }
    let seconds = report.elapsed.as_secs_f64().max(1e-3);
    format!(
        "serval storage-init: {uri} -> {}: {} of {} files, {:.1} MiB fetched in {seconds:.2} s ({:.0} MiB/s)",
        dest.display(),
        report.fetched_files,
        report.files,
        mib(report.downloaded),
        mib(report.downloaded) / seconds
    )
}

/// `1073741824`, `512Mi`, `200Gi`, `10G`, `1.5Ti`.
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 512Mi, 200Gi)"))?;
    let factor: f64 = match unit {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0_f64.powi(4),
        "K" | "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use Ki, Mi, Gi, Ti, K, M, G, T)"
            ))
        }
    };
    Ok((number * factor) as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_read_as_kubernetes_quantities() {
        assert_eq!(parse_size("16Mi"), Ok(16 << 20));
        assert_eq!(parse_size("200Gi"), Ok(200 << 30));
        assert_eq!(parse_size("10G"), Ok(10_000_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5Xi").is_err());
    }
}
