//! Running a long-lived role as a process: logging and trace export, the async runtime,
//! one line on stderr and status 1 when the role fails.

use std::process::ExitCode;

/// Runs a long-lived role on a Tokio runtime, one worker thread per core unless Tokio's own
/// `TOKIO_WORKER_THREADS` says otherwise; a failure is one line on stderr and status 1.
pub fn serve<E: std::fmt::Display>(
    role: &str,
    server: impl std::future::Future<Output = Result<(), E>>,
) -> ExitCode {
    let threads = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|n| n.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    serve_on(threads, role, server)
}

/// Like [`serve`], on `threads` worker threads.
pub fn serve_on<E: std::fmt::Display>(
    threads: usize,
    role: &str,
    server: impl std::future::Future<Output = Result<(), E>>,
) -> ExitCode {
    let _telemetry = crate::logging::init(role);
    exit_with_parent();
    // One thread is a runtime of its own kind: tasks run on this thread, with none of the
    // work-stealing scheduler's cross-thread bookkeeping (the sidecar's default).
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    let runtime = match builder
        // Deserialising an InferenceService (pod specs nest deeply) overflows tokio's 2 MiB
        // default in a debug build; untouched stack pages cost no memory.
        .thread_stack_size(8 * 1024 * 1024)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("serval {role}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serval {role}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// When started by `serval dev`'s supervisor, exit once it is gone: a supervisor killed
/// with SIGKILL cannot stop its replicas, and orphans would hold ports and GPUs.
fn exit_with_parent() {
    let Some(parent) = std::env::var(serval_controller::local::EXIT_WITH_PARENT_ENV)
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
    else {
        return;
    };
    std::thread::spawn(move || loop {
        if std::os::unix::process::parent_id() != parent {
            tracing::warn!(parent, "supervising process is gone; exiting");
            std::process::exit(1);
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    });
}
