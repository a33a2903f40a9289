//! `serval storage-init` against a real S3 server (s3s-fs, SigV4 checked) and a real HTTP
//! server on loopback: what a KServe user's init container does, and what they see when it
//! goes wrong.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serval_tests::serval_bin;
use serval_tests::storage::{
    noise, same_contents, FakeGcp, FileServer, ModelHub, Registry, S3Server,
};

/// Runs without credentials pass this as the secret that must not be printed.
const NO_SECRET: &str = "no-credentials-in-this-run";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn storage_init(server: &S3Server, args: &[&str]) -> Run {
    storage_init_with(server.env(), &server.secret_key, args)
}

/// Runs `serval storage-init`; no output may ever hold `secret`.
fn storage_init_with(env: Vec<(String, String)>, secret: &str, args: &[&str]) -> Run {
    let output = Command::new(serval_bin())
        .arg("storage-init")
        .args(args)
        .envs(env)
        .env("RUST_LOG", "info")
        .output()
        .expect("run serval storage-init");
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(
        !run.stdout.contains(secret) && !run.stderr.contains(secret),
        "the secret key was printed:\n{}{}",
        run.stdout,
        run.stderr
    );
    run
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("serval-storage-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The last line, the one a user reads.
fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or_default()
}

#[test]
fn a_model_prefix_is_copied_exactly_and_a_rerun_fetches_only_what_changed() {
    let server = S3Server::start();
    let mut expected = Vec::new();
    for i in 0..200 {
        let key = format!(
            "bert/{}/shard-{i:03}.bin",
            ["tokenizer", "weights", "extra/deep"][i % 3]
        );
        server.put("models", &key, &noise(i * 331 % 70_000, i as u64));
        expected.push(key.trim_start_matches("bert/").to_string());
    }
    server.put_noise("models", "bert/model.safetensors", 40 << 20, 7);
    expected.push("model.safetensors".into());
    // A sibling whose name merely starts the same is another model.
    server.put("models", "bert-large/other.bin", b"not this one");
    expected.sort();

    let dest = temp_dir("prefix");
    let run = storage_init(
        &server,
        &[
            "--chunk-size",
            "4Mi",
            "s3://models/bert",
            dest.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut got = files_under(&dest);
    got.retain(|f| f != ".serval-model-complete");
    assert_eq!(got, expected);
    for file in &expected {
        assert!(
            same_contents(
                &dest.join(file),
                &server.object_path("models", &format!("bert/{file}"))
            ),
            "{file} differs from the object"
        );
    }
    assert!(
        last_line(&run.stderr).contains("201 of 201 files"),
        "{}",
        run.stderr
    );

    // Nothing changed: nothing is read.
    let big = dest.join("model.safetensors");
    let written = std::fs::metadata(&big).unwrap().modified().unwrap();
    let again = storage_init(&server, &["s3://models/bert", dest.to_str().unwrap()]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        last_line(&again.stderr).contains("already complete (201 files"),
        "{}",
        again.stderr
    );
    assert_eq!(
        std::fs::metadata(&big).unwrap().modified().unwrap(),
        written
    );

    // One object changed: only it is read again.
    server.put(
        "models",
        "bert/weights/shard-001.bin",
        b"a new version of this shard",
    );
    let changed = storage_init(&server, &["s3://models/bert", dest.to_str().unwrap()]);
    assert_eq!(changed.code, 0, "{}", changed.stderr);
    assert!(
        last_line(&changed.stderr).contains("1 of 201 files"),
        "{}",
        changed.stderr
    );
    assert_eq!(
        std::fs::read(dest.join("weights/shard-001.bin")).unwrap(),
        b"a new version of this shard"
    );

    // Objects deleted upstream go from the destination too, with the directories they
    // leave empty; a file the fetch never wrote stays.
    std::fs::remove_dir_all(server.object_path("models", "bert/extra")).unwrap();
    std::fs::remove_file(server.object_path("models", "bert/tokenizer/shard-000.bin")).unwrap();
    std::fs::write(dest.join("tokenizer/notes.txt"), b"mine").unwrap();
    let pruned = storage_init(&server, &["s3://models/bert", dest.to_str().unwrap()]);
    assert_eq!(pruned.code, 0, "{}", pruned.stderr);
    let mut left = files_under(&dest);
    left.retain(|f| f != ".serval-model-complete");
    let mut still_listed: Vec<String> = expected
        .iter()
        .filter(|f| !f.starts_with("extra/") && *f != "tokenizer/shard-000.bin")
        .cloned()
        .chain(["tokenizer/notes.txt".to_string()])
        .collect();
    still_listed.sort();
    assert_eq!(left, still_listed);
    assert!(!dest.join("extra").exists());
    std::fs::remove_dir_all(&dest).unwrap();
}

#[test]
fn a_gigabyte_object_arrives_whole_through_parallel_ranges_with_flat_memory() {
    let server = S3Server::start();
    let size: u64 = 1 << 30;
    server.put_noise("models", "llm/model.gguf", size, 42);
    let object = server.object_path("models", "llm/model.gguf");
    let dest = temp_dir("gigabyte");
    let mut child = Command::new(serval_bin())
        .args([
            "storage-init",
            "s3://models/llm/model.gguf",
            dest.to_str().unwrap(),
        ])
        .envs(server.env())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let started = Instant::now();
    let mut peak_kib = 0u64;
    let status = loop {
        if let Ok(status) = std::fs::read_to_string(&status_file) {
            if let Some(hwm) = status.lines().find_map(|l| l.strip_prefix("VmHWM:")) {
                peak_kib = peak_kib.max(
                    hwm.trim()
                        .trim_end_matches(" kB")
                        .trim()
                        .parse()
                        .unwrap_or(0),
                );
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(
        same_contents(&dest.join("model.gguf"), &object),
        "the copy differs"
    );
    eprintln!(
        "1 GiB in {:.2} s ({:.0} MiB/s), peak RSS {:.1} MiB",
        elapsed.as_secs_f64(),
        1024.0 / elapsed.as_secs_f64(),
        peak_kib as f64 / 1024.0
    );
    // Streamed to disk: the process holds a few buffers, never the object.
    assert!(
        peak_kib > 0 && peak_kib < 128 * 1024,
        "peak RSS {peak_kib} KiB for a 1 GiB object"
    );
    std::fs::remove_dir_all(&dest).unwrap();
}

/// Archives made by Python's tarfile and zipfile, which write any entry name asked for.
fn make_archives(dir: &Path) {
    let script = r#"
import io, sys, tarfile, zipfile
d = sys.argv[1]
def tar(name, entries):
    with tarfile.open(f"{d}/{name}", "w:gz") as t:
        for path, data in entries:
            info = tarfile.TarInfo(path); info.size = len(data)
            t.addfile(info, io.BytesIO(data))
tar("good.tar.gz", [("model/weights.bin", b"w" * 5000), ("config.json", b"{}")])
tar("good-v2.tar.gz", [("config.json", b'{"v": 2}'), ("tokenizer/vocab.json", b"{}")])
tar("evil.tar.gz", [("config.json", b"{}"), ("../escaped.txt", b"gotcha")])
with tarfile.open(f"{d}/link.tar.gz", "w:gz") as t:
    info = tarfile.TarInfo("model.bin"); info.type = tarfile.SYMTYPE; info.linkname = "/etc/passwd"
    t.addfile(info)
with zipfile.ZipFile(f"{d}/good.zip", "w") as z:
    z.writestr("model.onnx", b"onnx" * 100)
with zipfile.ZipFile(f"{d}/evil.zip", "w") as z:
    z.writestr("ok.txt", b"1")
    z.writestr("/tmp/absolute.txt", b"2")
"#;
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn archives_unpack_inside_the_destination_and_escaping_entries_are_refused() {
    let served = temp_dir("archives-served");
    make_archives(&served);
    let http = FileServer::start(&served);
    let work = temp_dir("archives");
    let none = Vec::new;

    let dest = work.join("good-tar");
    let run = storage_init_with(
        none(),
        NO_SECRET,
        &[&http.url("good.tar.gz"), dest.to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        files_under(&dest),
        [".serval-model-complete", "config.json", "model/weights.bin"]
    );
    let dest = work.join("good-zip");
    let run = storage_init_with(
        none(),
        NO_SECRET,
        &[&http.url("good.zip"), dest.to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        std::fs::read(dest.join("model.onnx")).unwrap(),
        b"onnx".repeat(100)
    );

    for (archive, entry) in [
        ("evil.tar.gz", "../escaped.txt"),
        ("evil.zip", "/tmp/absolute.txt"),
        ("link.tar.gz", "model.bin"),
    ] {
        let dest = work.join("inner").join(archive);
        let run = storage_init_with(
            none(),
            NO_SECRET,
            &[&http.url(archive), dest.to_str().unwrap()],
        );
        assert_eq!(run.code, 1, "{archive}: {}", run.stderr);
        let line = last_line(&run.stderr);
        assert!(
            line.contains(entry) && line.contains("refusing to unpack"),
            "{archive}: {line}"
        );
        assert!(
            !dest.join(".serval-model-complete").exists(),
            "{archive} looks complete"
        );
    }
    assert!(!work.join("inner/escaped.txt").exists() && !work.join("escaped.txt").exists());
    assert!(!Path::new("/tmp/absolute.txt").exists());

    // A single S3 object that is an archive is unpacked as KServe does.
    let server = S3Server::start();
    server.put(
        "models",
        "packed/model.tar.gz",
        &std::fs::read(served.join("good.tar.gz")).unwrap(),
    );
    let dest = work.join("from-s3");
    let run = storage_init(
        &server,
        &["s3://models/packed/model.tar.gz", dest.to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(dest.join("model/weights.bin").is_file() && !dest.join("model.tar.gz").exists());
    // The archive replaced upstream: what the new one no longer holds goes, a user's file
    // stays.
    std::fs::write(dest.join("notes.txt"), "mine").unwrap();
    server.put(
        "models",
        "packed/model.tar.gz",
        &std::fs::read(served.join("good-v2.tar.gz")).unwrap(),
    );
    let run = storage_init(
        &server,
        &["s3://models/packed/model.tar.gz", dest.to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        files_under(&dest),
        [
            ".serval-model-complete",
            "config.json",
            "notes.txt",
            "tokenizer/vocab.json"
        ]
    );
    assert!(!dest.join("model").exists(), "the emptied directory stays");
    assert_eq!(
        std::fs::read_to_string(dest.join("config.json")).unwrap(),
        "{\"v\": 2}"
    );
    std::fs::remove_dir_all(&work).unwrap();
    std::fs::remove_dir_all(&served).unwrap();
}

/// A small tmpfs, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (CI runs as root)"
        );
        Self(dir.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn bad_credentials_missing_objects_and_a_full_disk_each_end_in_one_clear_line() {
    let server = S3Server::start();
    server.put("models", "iris/model.json", b"{\"learner\": {}}");
    server.put_noise("models", "big/weights.bin", 24 << 20, 3);
    let work = temp_dir("errors");
    let dest = work.join("dest");
    let dest = dest.to_str().unwrap();

    let mut wrong = server.env();
    wrong[1].1 = "wrong/secret/key/for/this/server".into();
    let run = storage_init_with(wrong, &server.secret_key, &["s3://models/iris", dest]);
    assert_eq!(run.code, 1);
    assert_eq!(
        last_line(&run.stderr),
        "serval storage-init: s3://models/iris: access denied: the server refused the credentials (SignatureDoesNotMatch)"
    );
    assert!(!run.stderr.contains("wrong/secret/key"), "{}", run.stderr);

    // KServe's anonymous S3 reads of a bucket that wants credentials: nothing to blame.
    let mut anonymous = server.env();
    anonymous.retain(|(name, _)| !name.starts_with("AWS_") || name == "AWS_ENDPOINT_URL");
    anonymous.push(("awsAnonymousCredential".into(), "true".into()));
    let run = storage_init_with(anonymous, &server.secret_key, &["s3://models/iris", dest]);
    assert_eq!(run.code, 1);
    assert!(
        last_line(&run.stderr).starts_with(
            "serval storage-init: s3://models/iris: access denied: no credentials were found, \
             and anonymous reads are refused"
        ),
        "{}",
        run.stderr
    );

    let run = storage_init(&server, &["s3://no-such-bucket/iris", dest]);
    assert_eq!(run.code, 1);
    assert_eq!(
        last_line(&run.stderr),
        "serval storage-init: s3://no-such-bucket/iris: not found (NoSuchBucket)"
    );
    let run = storage_init(&server, &["s3://models/no-such-model", dest]);
    assert_eq!(run.code, 1);
    assert!(
        last_line(&run.stderr).contains("nothing to download"),
        "{}",
        run.stderr
    );
    let run = storage_init(&server, &["ftp://example.com/model", dest]);
    assert_eq!(run.code, 1);
    assert!(
        last_line(&run.stderr).contains("unknown scheme"),
        "{}",
        run.stderr
    );
    assert!(!Path::new(dest).join(".serval-model-complete").exists());

    let disk = SmallDisk::mount(&work.join("small"), "8m");
    let run = storage_init(&server, &["s3://models/big", disk.0.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let line = last_line(&run.stderr);
    assert!(
        line.contains("no space left on device") && line.contains("bytes still to write"),
        "{line}"
    );
    assert!(
        files_under(&disk.0)
            .iter()
            .all(|f| f.ends_with(".serval-partial") || f.starts_with(".serval-model-progress")),
        "something under a final name: {:?}",
        files_under(&disk.0)
    );
    drop(disk);
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn an_interrupted_download_fails_clearly_and_a_rerun_completes_keeping_finished_files() {
    let mut server = S3Server::start();
    for i in 0..6 {
        server.put_noise("models", &format!("sharded/part-{i}.bin"), 16 << 20, i);
    }
    let dest = temp_dir("interrupted");
    let args = [
        "storage-init",
        "--parallel",
        "1",
        "--chunk-size",
        "1Mi",
        "--retries",
        "1",
        "s3://models/sharded",
    ];
    let mut child = Command::new(serval_bin())
        .args(args)
        .arg(&dest)
        .envs(server.env())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the server once the first file is finished and the second is under way.
    let journal = dest.join(".serval-model-progress");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let finished = std::fs::read_to_string(&journal)
            .map(|j| j.lines().count())
            .unwrap_or(0);
        let partial = files_under(&dest)
            .iter()
            .any(|f| f.ends_with(".serval-partial"));
        if finished >= 1 && partial {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the server was killed"
        );
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    server.kill();
    let status = child.wait().unwrap();
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert!(!status.success());
    let line = last_line(&stderr);
    assert!(
        line.starts_with("serval storage-init: s3://models/sharded: ") && line.contains("refused"),
        "{line}"
    );
    assert!(!dest.join(".serval-model-complete").exists());
    let present = files_under(&dest);
    assert!(
        present.iter().all(|f| !f.ends_with(".serval-partial")),
        "{present:?}"
    );
    for file in present.iter().filter(|f| f.starts_with("part-")) {
        assert!(same_contents(
            &dest.join(file),
            &server.object_path("models", &format!("sharded/{file}"))
        ));
    }
    let kept = present.iter().filter(|f| f.starts_with("part-")).count();
    assert!((1..6).contains(&kept), "{present:?}");

    server.restart();
    let run = storage_init(&server, &["s3://models/sharded", dest.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        last_line(&run.stderr).contains(&format!("{} of 6 files", 6 - kept)),
        "{}",
        run.stderr
    );
    for i in 0..6 {
        let file = format!("part-{i}.bin");
        assert!(same_contents(
            &dest.join(&file),
            &server.object_path("models", &format!("sharded/{file}"))
        ));
    }
    std::fs::remove_dir_all(&dest).unwrap();
}

#[test]
fn an_object_replaced_during_its_download_fails_clearly_and_a_rerun_fetches_the_new_one() {
    const LEN: u64 = 64 << 20;
    let server = S3Server::start();
    server.put_noise("models", "replaced/model.bin", LEN, 1);
    // The next version is written beforehand, so that swapping it in is instant.
    let staged = server.staging_path("model.bin");
    serval_tests::storage::write_noise_file(&staged, LEN, 2);
    let dest = temp_dir("replaced");
    let mut child = Command::new(serval_bin())
        .args([
            "storage-init",
            "--parallel",
            "1",
            "--chunk-size",
            "1Mi",
            "s3://models/replaced",
        ])
        .arg(&dest)
        .envs(server.env())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Replace the object once the first range of the first version is on disk (the
    // partial file is sized up front, so its length says nothing).
    let partial = dest.join("model.bin.serval-partial");
    let first_bytes = noise(8, 1);
    let starts_with_version_1 = || {
        use std::io::Read;
        let mut head = [0u8; 8];
        std::fs::File::open(&partial)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok_and(|()| head[..] == first_bytes[..])
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !starts_with_version_1() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the object was replaced"
        );
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    server.replace_with_staged_noise("models", "replaced/model.bin", &staged, LEN, 2);
    let status = child.wait().unwrap();
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert!(!status.success(), "{stderr}");
    assert_eq!(
        last_line(&stderr),
        "serval storage-init: s3://models/replaced: model.bin changed while it was being \
         fetched (ETag \"noise-1-67108864\", then \"noise-2-67108864\"); run again to \
         fetch the new version"
    );
    assert!(!dest.join(".serval-model-complete").exists());
    let present = files_under(&dest);
    assert!(
        !present.iter().any(|f| f.starts_with("model.bin")),
        "{present:?}"
    );

    let run = storage_init(&server, &["s3://models/replaced", dest.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(same_contents(
        &dest.join("model.bin"),
        &server.object_path("models", "replaced/model.bin")
    ));
    std::fs::remove_dir_all(&dest).unwrap();
}

#[test]
fn gs_uses_the_metadata_servers_token_as_under_gke_workload_identity_else_reads_anonymously() {
    let root = temp_dir("gcp");
    for bucket in ["models", "public-models"] {
        serval_tests::storage::write_noise_file(
            &root.join(bucket).join("iris/model.bin"),
            3 << 20,
            7,
        );
    }
    let gcp = FakeGcp::start(&root);
    // No key file and no `gcloud` login: only the metadata server can vouch for the pod.
    let home = temp_dir("gcp-home");
    let nothing_there = serval_tests::lease_port();
    let env = |metadata_host: String| {
        vec![
            (
                "GOOGLE_BASE_URL".to_string(),
                format!("http://{}", gcp.host()),
            ),
            ("GOOGLE_ALLOW_HTTP".to_string(), "true".to_string()),
            ("GCE_METADATA_HOST".to_string(), metadata_host),
            ("HOME".to_string(), home.display().to_string()),
        ]
    };
    let source = root.join("models/iris/model.bin");

    // On GKE with Workload Identity: the private bucket is read with the pod's token.
    let dest = temp_dir("gcp-identity");
    let run = storage_init_with(
        env(gcp.host()),
        FakeGcp::TOKEN,
        &["gs://models/iris", dest.to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(same_contents(&dest.join("model.bin"), &source));
    std::fs::remove_dir_all(&dest).unwrap();
    assert!(gcp.log().contains("token issued"), "{}", gcp.log());
    assert!(!gcp.log().contains("refused"), "{}", gcp.log());

    // Elsewhere nothing answers at the metadata address: public buckets are read
    // anonymously, and a private one is refused in one clear line.
    let metadata_gone = env(format!("127.0.0.1:{}", nothing_there.port()));
    let dest = temp_dir("gcp-public");
    let run = storage_init_with(
        metadata_gone.clone(),
        FakeGcp::TOKEN,
        &["gs://public-models/iris", dest.to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(same_contents(
        &dest.join("model.bin"),
        &root.join("public-models/iris/model.bin")
    ));
    std::fs::remove_dir_all(&dest).unwrap();
    let dest = temp_dir("gcp-refused");
    let run = storage_init_with(
        metadata_gone,
        FakeGcp::TOKEN,
        &["gs://models/iris", dest.to_str().unwrap()],
    );
    assert_ne!(run.code, 0);
    std::fs::remove_dir_all(&dest).unwrap();
    assert_eq!(
        last_line(&run.stderr),
        "serval storage-init: gs://models/iris: access denied: no credentials were found, \
         and anonymous reads are refused (AccessDenied)"
    );
    assert!(
        gcp.log().contains("refused models (anonymous)"),
        "{}",
        gcp.log()
    );
    drop(gcp);
    for dir in [root, home] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn two_cache_fills_at_once_download_once_and_old_entries_are_evicted() {
    let server = S3Server::start();
    server.put_noise("models", "shared/model.bin", 64 << 20, 9);
    server.put("models", "small/model.json", b"{}");
    let cache = temp_dir("cache");
    let cache_arg = format!("--cache-dir={}", cache.display());
    let spawn = || {
        Command::new(serval_bin())
            .args(["storage-init", &cache_arg, "s3://models/shared"])
            .envs(server.env())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success());
    assert_eq!(a.stdout, b.stdout, "both name the same cache entry");
    let model_dir = PathBuf::from(String::from_utf8_lossy(&a.stdout).trim());
    assert!(model_dir.starts_with(&cache));
    let fetched = [&a, &b]
        .iter()
        .filter(|o| String::from_utf8_lossy(&o.stderr).contains("1 of 1 files"))
        .count();
    let reused = [&a, &b]
        .iter()
        .filter(|o| String::from_utf8_lossy(&o.stderr).contains("already complete"))
        .count();
    assert_eq!(
        (fetched, reused),
        (1, 1),
        "{:?} {:?}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    assert!(same_contents(
        &model_dir.join("model.bin"),
        &server.object_path("models", "shared/model.bin")
    ));

    // Past the budget, the least recently used entry goes; the one just filled stays.
    let run = storage_init(
        &server,
        &[&cache_arg, "--cache-max-size=1Mi", "s3://models/small"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("evicted models-shared-"),
        "{}",
        run.stderr
    );
    assert!(!model_dir.exists());
    assert!(PathBuf::from(run.stdout.trim())
        .join("model.json")
        .is_file());
    std::fs::remove_dir_all(&cache).unwrap();
}

/// A child process killed when dropped, so a failing test leaves none behind.
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `serval dev` on a manifest whose model is on S3: fetched into the user's model cache,
/// served, and not fetched again by the next start.
#[tokio::test]
async fn serval_dev_serves_a_model_from_s3_and_reuses_its_cache() {
    use serval_tests::http_client::{http1, send};
    let server = S3Server::start();
    let model = serval_tests::repo_root().join("examples/models/iris-xgboost/model.json");
    server.put(
        "models",
        "iris-xgboost/model.json",
        &std::fs::read(&model).unwrap(),
    );
    let work = temp_dir("dev");
    let manifest = work.join("iris.yaml");
    let example =
        std::fs::read_to_string(serval_tests::repo_root().join("examples/xgboost-iris.yaml"))
            .unwrap();
    std::fs::write(
        &manifest,
        example.replace("./models/iris-xgboost", "s3://models/iris-xgboost"),
    )
    .unwrap();
    let cache = work.join("cache");
    let body = r#"{"inputs":[{"name":"input-0","shape":[1,4],"datatype":"FP64","data":[6.8,2.8,4.8,1.4]}]}"#;
    let client = http1();

    for start in ["first", "second"] {
        let port = serval_tests::lease_port();
        let mut dev = KilledOnDrop(
            Command::new(serval_bin())
                .arg("dev")
                .arg(format!("--listen=127.0.0.1:{port}"))
                .arg(format!("--model-cache-dir={}", cache.display()))
                .arg(format!("--log-dir={}", work.join("logs").display()))
                .arg(&manifest)
                .envs(server.env())
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let stderr = serval_tests::collect_lines(dev.0.stderr.take().unwrap());
        let url = format!(
            "http://127.0.0.1:{port}/serving/default/xgboost-iris/v2/models/xgboost-iris/infer"
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        let answer = loop {
            match send(&client, "POST", &url, body).await {
                Ok(answer) if answer.status == 200 => break answer.json(),
                _ => {
                    assert!(
                        Instant::now() < deadline && dev.0.try_wait().unwrap().is_none(),
                        "{start} start: no answer; serval dev said: {:?}",
                        stderr.lock().unwrap()
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        assert_eq!(
            answer["outputs"][0]["shape"],
            serde_json::json!([1, 3]),
            "{answer}"
        );
        drop(dev);
        let said = stderr.lock().unwrap().join("\n");
        assert!(
            said.contains("fetching s3://models/iris-xgboost into the model cache"),
            "{said}"
        );
        let cached = std::fs::read_dir(&cache).unwrap().count();
        assert_eq!(cached, 1, "one cache entry for the one model");
        let expected = match start {
            "first" => "xgboost-iris: fetched 1 of 1 files",
            // The marker matched the listing: nothing was read again.
            _ => "xgboost-iris: model already complete in the cache",
        };
        assert!(said.contains(expected), "{start} start: {said}");
    }
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn hugging_face_and_modelscope_repositories_arrive_with_their_tokens_unprinted() {
    let repos = temp_dir("hub");
    let token = "hf_secret_token_for_the_test_hub";
    for (revision, files) in [("main", 3usize), ("v2", 1), ("master", 2)] {
        for i in 0..files {
            let path = repos.join(format!("org/tiny-llm/{revision}/sub{i}/weights-{i}.bin"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, noise(3_000_000 + i * 1000, i as u64 + 1)).unwrap();
        }
    }
    let hub = ModelHub::start(&repos, Some(token));
    let work = temp_dir("hub-dest");
    let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let cases = [
        (
            "hf://org/tiny-llm",
            "main",
            env(&[("HF_ENDPOINT", &hub.endpoint()), ("HF_TOKEN", token)]),
        ),
        (
            "hf://org/tiny-llm:v2",
            "v2",
            env(&[("HF_ENDPOINT", &hub.endpoint()), ("HF_TOKEN", token)]),
        ),
        (
            "modelscope://org/tiny-llm",
            "master",
            env(&[
                ("MODELSCOPE_ENDPOINT", &hub.endpoint()),
                ("MODELSCOPE_API_TOKEN", token),
            ]),
        ),
    ];
    for (uri, revision, env) in cases {
        let dest = work.join(revision);
        let run = storage_init_with(
            env,
            token,
            &["--chunk-size", "1Mi", uri, dest.to_str().unwrap()],
        );
        assert_eq!(run.code, 0, "{uri}: {}", run.stderr);
        let mut got = files_under(&dest);
        got.retain(|f| f != ".serval-model-complete");
        let source = repos.join("org/tiny-llm").join(revision);
        assert_eq!(got, files_under(&source), "{uri}");
        for file in &got {
            assert!(
                same_contents(&dest.join(file), &source.join(file)),
                "{uri}: {file}"
            );
        }
    }
    // A wrong token is refused in one line, and neither token is printed.
    let run = storage_init_with(
        env(&[
            ("HF_ENDPOINT", &hub.endpoint()),
            ("HF_TOKEN", "hf_wrong_token_value"),
        ]),
        token,
        &["hf://org/tiny-llm", work.join("denied").to_str().unwrap()],
    );
    assert_eq!(run.code, 1);
    let line = last_line(&run.stderr);
    assert!(
        line.starts_with("serval storage-init: hf://org/tiny-llm: access denied"),
        "{line}"
    );
    assert!(
        !run.stderr.contains("hf_wrong_token_value"),
        "{}",
        run.stderr
    );
    let run = storage_init_with(
        env(&[
            ("MODELSCOPE_ENDPOINT", &hub.endpoint()),
            ("MODELSCOPE_API_TOKEN", token),
        ]),
        token,
        &[
            "modelscope://org/missing",
            work.join("missing").to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 1);
    assert_eq!(
        last_line(&run.stderr),
        "serval storage-init: modelscope://org/missing: not found (model not found)"
    );
    std::fs::remove_dir_all(&work).unwrap();
    std::fs::remove_dir_all(&repos).unwrap();
}

#[test]
fn a_git_repository_is_cloned_at_its_head_or_a_tag() {
    let work = temp_dir("git");
    let repo = work.join("src");
    std::fs::create_dir_all(repo.join("tokenizer")).unwrap();
    let git = |dir: &Path, args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(repo.join("config.json"), b"{\"v\": 1}").unwrap();
    std::fs::write(repo.join("tokenizer/vocab.txt"), noise(200_000, 5)).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "v1"]);
    git(&repo, &["tag", "v1"]);
    std::fs::write(repo.join("config.json"), b"{\"v\": 2}").unwrap();
    git(&repo, &["commit", "-q", "-am", "v2"]);
    let served = work.join("served");
    std::fs::create_dir_all(&served).unwrap();
    git(&work, &["clone", "-q", "--bare", "src", "served/model.git"]);
    git(&served.join("model.git"), &["update-server-info"]);
    let http = FileServer::start(&served);

    let secret = vec![(
        "GIT_PASSWORD".to_string(),
        "git-password-never-shown".to_string(),
    )];
    let latest = work.join("latest");
    let run = storage_init_with(
        secret.clone(),
        "git-password-never-shown",
        &[&http.url("model.git"), latest.to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        files_under(&latest),
        [
            ".serval-model-complete",
            "config.json",
            "tokenizer/vocab.txt"
        ]
    );
    assert_eq!(
        std::fs::read(latest.join("config.json")).unwrap(),
        b"{\"v\": 2}"
    );
    let tagged = work.join("tagged");
    let run = storage_init_with(
        secret.clone(),
        "git-password-never-shown",
        &[
            &format!("{}@v1", http.url("model.git")),
            tagged.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        std::fs::read(tagged.join("config.json")).unwrap(),
        b"{\"v\": 1}"
    );

    let run = storage_init_with(
        secret,
        "git-password-never-shown",
        &[
            &http.url("missing.git"),
            work.join("missing").to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 1);
    assert!(
        last_line(&run.stderr).starts_with(&format!(
            "serval storage-init: {}: ",
            http.url("missing.git")
        )),
        "{}",
        run.stderr
    );
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn an_oci_image_is_pulled_with_a_registry_token_and_its_models_tree_unpacked() {
    let root = temp_dir("registry");
    let this_arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    for arch in ["amd64", "arm64"] {
        let models = root.join("org/iris/v1").join(arch).join("models");
        std::fs::create_dir_all(models.join("tokenizer")).unwrap();
        std::fs::write(
            models.join("model.json"),
            format!("{{\"arch\": \"{arch}\"}}"),
        )
        .unwrap();
        std::fs::write(models.join("tokenizer/vocab.bin"), noise(3_000_000, 11)).unwrap();
        // Hidden by the registry's second layer: a whiteout and an opaque directory.
        std::fs::write(models.join("stale.bin"), "deleted by the next layer").unwrap();
        std::fs::create_dir_all(models.join("old/deep")).unwrap();
        std::fs::write(models.join("old/deep/gone.txt"), "hidden by the next layer").unwrap();
        // The next version of the image, without the tokenizer.
        let next = root.join("org/iris/v2").join(arch).join("models");
        std::fs::create_dir_all(&next).unwrap();
        std::fs::write(next.join("model.json"), "{\"version\": 2}").unwrap();
    }
    let password = "registry-password-never-printed";
    let registry = Registry::start(&root, "puller", password);
    let credentials = vec![
        ("OCI_USERNAME".to_string(), "puller".to_string()),
        ("OCI_PASSWORD".to_string(), password.to_string()),
    ];
    let uri = format!("oci+fetch://127.0.0.1:{}/org/iris:v1", registry.port);
    let dest = temp_dir("registry-dest");
    let run = storage_init_with(
        credentials.clone(),
        password,
        &["--chunk-size", "1Mi", &uri, dest.to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        files_under(&dest),
        [
            ".serval-model-complete",
            "model.json",
            "old/new.txt",
            "tokenizer/vocab.bin"
        ],
        "the layers applied in order, whiteouts included"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("model.json")).unwrap(),
        format!("{{\"arch\": \"{this_arch}\"}}"),
        "this machine's platform from the index"
    );
    let again = storage_init_with(
        credentials.clone(),
        password,
        &[&uri, dest.to_str().unwrap()],
    );
    assert!(
        last_line(&again.stderr).contains("already complete"),
        "{}",
        again.stderr
    );
    // The next version over the same directory: what it no longer holds goes, a user's
    // file stays.
    std::fs::write(dest.join("notes.txt"), "mine").unwrap();
    let next = format!("oci+fetch://127.0.0.1:{}/org/iris:v2", registry.port);
    let run = storage_init_with(credentials, password, &[&next, dest.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        files_under(&dest),
        [
            ".serval-model-complete",
            "model.json",
            "notes.txt",
            "old/new.txt"
        ]
    );
    assert!(
        !dest.join("tokenizer").exists(),
        "the emptied directory stays"
    );

    let wrong = vec![
        ("OCI_USERNAME".to_string(), "puller".to_string()),
        ("OCI_PASSWORD".to_string(), "not-the-password".to_string()),
    ];
    let denied = temp_dir("registry-denied");
    let run = storage_init_with(wrong, password, &[&uri, denied.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert!(
        last_line(&run.stderr).contains("access denied"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("not-the-password"));
    std::fs::remove_dir_all(&denied).unwrap();
    std::fs::remove_dir_all(&dest).unwrap();
    std::fs::remove_dir_all(&root).unwrap();
}
