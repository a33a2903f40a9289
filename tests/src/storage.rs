//! Peers for the storage tests: a real S3 server on loopback (s3s-fs: the S3 API with
//! SigV4 checked, over a directory the test seeds), and a static HTTP file server.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{lease_port, repo_root, PortLease};

/// The s3s-fs binary, built by `tools/install-storage-test-tools.sh` when missing (once per
/// test process: tests running at once would otherwise race on a first install).
pub fn s3_server_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let output = Command::new("bash")
            .arg(repo_root().join("tools/install-storage-test-tools.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run tools/install-storage-test-tools.sh");
        assert!(output.status.success(), "installing s3s-fs failed");
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
    .clone()
}

/// Waits until something accepts connections on `host:port`.
fn wait_listening(host: &str, port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect((host, port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "{what} never listened on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An S3 server whose buckets are the directories of `root`.
#[derive(Debug)]
pub struct S3Server {
    child: Option<Child>,
    host: String,
    pub root: PathBuf,
    pub port: u16,
    /// Held for the server's life: a restart binds the same port again.
    _lease: PortLease,
    pub access_key: String,
    pub secret_key: String,
}

impl S3Server {
    pub fn start() -> Self {
        Self::start_on("127.0.0.1")
    }

    /// Listening on `host` (an address of this machine), for clients that are not on
    /// loopback, such as pods.
    pub fn start_on(host: &str) -> Self {
        let lease = lease_port();
        let port = lease.port();
        let root = std::env::temp_dir().join(format!("serval-s3-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let mut server = Self {
            child: None,
            host: host.to_string(),
            root,
            port,
            _lease: lease,
            access_key: "AKIASERVALTEST0000001".into(),
            secret_key: format!("serval/test/secret/{port}/Zq8vK2mW"),
        };
        server.restart();
        server
    }

    /// Starts the server (again) on the same port and data.
    pub fn restart(&mut self) {
        self.kill();
        let mut child = Command::new(s3_server_bin())
            .args(["--host", &self.host, "--port", &self.port.to_string()])
            .args([
                "--access-key",
                &self.access_key,
                "--secret-key",
                &self.secret_key,
            ])
            .arg(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        wait_listening(&self.host, self.port, &mut child, "s3s-fs");
        self.child = Some(child);
    }

    /// Kills the server at once, as a lost connection would look to a client.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// The variables a KServe user sets for an S3-compatible server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), self.secret_key.clone()),
            ("AWS_ENDPOINT_URL".into(), self.endpoint()),
            ("AWS_REGION".into(), "us-east-1".into()),
        ]
    }

    /// Stores `bytes` as `s3://bucket/key`.
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let path = self.object_path(bucket, key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in bytes {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.record_etag(bucket, key, &format!("{hash:016x}"));
    }

    /// Stores `len` bytes of [`noise`] as `s3://bucket/key`, written a block at a time.
    pub fn put_noise(&self, bucket: &str, key: &str, len: u64, seed: u64) {
        write_noise_file(&self.object_path(bucket, key), len, seed);
        self.record_etag(bucket, key, &format!("noise-{seed}-{len}"));
    }

    /// Replaces `s3://bucket/key` at once by `len` bytes of [`noise`] written beforehand to
    /// `staged` (on the server's disk): a rename, as a store swaps in a new version whole.
    pub fn replace_with_staged_noise(
        &self,
        bucket: &str,
        key: &str,
        staged: &Path,
        len: u64,
        seed: u64,
    ) {
        // The ETag first: s3s-fs reads the two apart, and a GET between them must not pair
        // new bytes with the old ETag.
        self.record_etag(bucket, key, &format!("noise-{seed}-{len}"));
        std::fs::rename(staged, self.object_path(bucket, key)).unwrap();
    }

    /// Where to stage an object's next version: on the server's disk, outside its buckets.
    pub fn staging_path(&self, name: &str) -> PathBuf {
        self.root.join(format!(".staged-{name}"))
    }

    /// Objects written straight to disk have no ETag yet, and s3s-fs would hash the whole
    /// object on every request: record one where it keeps what an upload would have.
    fn record_etag(&self, bucket: &str, key: &str, etag: &str) {
        use base64::Engine as _;
        let encode = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let info = self.root.join(format!(
            ".bucket-{}.object-{}.internal.json",
            encode(bucket),
            encode(key)
        ));
        std::fs::write(info, serde_json::json!({ "e_tag": etag }).to_string()).unwrap();
    }

    /// Where `s3://bucket/key` lives on disk (to seed large objects without holding them).
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        std::fs::create_dir_all(self.root.join(bucket)).unwrap();
        self.root.join(bucket).join(key)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Python's static file server over `dir`.
#[derive(Debug)]
pub struct FileServer {
    child: Child,
    pub port: u16,
}

impl FileServer {
    pub fn start(dir: &Path) -> Self {
        let lease = lease_port();
        let port = lease.port();
        let mut child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m http.server");
        wait_listening("127.0.0.1", port, &mut child, "http.server");
        Self { child, port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Bytes that do not compress or repeat: `len` of them from a seeded generator.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `len` bytes of [`noise`] to `path` a block at a time (for objects of gigabytes).
pub fn write_noise_file(path: &Path, len: u64, seed: u64) {
    use std::io::Write;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let block = 8 << 20;
    let mut written = 0u64;
    let mut seed = seed;
    while written < len {
        let n = block.min((len - written) as usize);
        out.write_all(&noise(n, seed)).unwrap();
        written += n as u64;
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    }
    out.flush().unwrap();
}

/// Whether two files hold the same bytes, compared a block at a time.
pub fn same_contents(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (Ok(fa), Ok(fb)) = (std::fs::File::open(a), std::fs::File::open(b)) else {
        return false;
    };
    if fa.metadata().unwrap().len() != fb.metadata().unwrap().len() {
        return false;
    }
    let (mut ra, mut rb) = (std::io::BufReader::new(fa), std::io::BufReader::new(fb));
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = ra.read(&mut ba).unwrap();
        if n == 0 {
            return true;
        }
        rb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            return false;
        }
    }
}

/// `tests/python/model_hub.py`: the Hugging Face and ModelScope HTTP APIs over `root`
/// (`<org>/<model>/<revision>/...`), requiring `token` as a bearer token when given.
#[derive(Debug)]
pub struct ModelHub {
    child: Child,
    pub port: u16,
}

impl ModelHub {
    pub fn start(root: &Path, token: Option<&str>) -> Self {
        let lease = lease_port();
        let port = lease.port();
        let mut child = Command::new("python3")
            .arg(repo_root().join("tests/python/model_hub.py"))
            .arg(root)
            .arg(port.to_string())
            .args(token)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/python/model_hub.py");
        wait_listening("127.0.0.1", port, &mut child, "model_hub.py");
        Self { child, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for ModelHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tests/python/gcp.py`: a GCE/GKE metadata server that issues [`FakeGcp::TOKEN`] and
/// Cloud Storage's XML API over `root/<bucket>/<key>`, on one port. Buckets named
/// `public-*` answer anyone, the others only that token; `root/.log` records each token
/// issued and each request refused.
#[derive(Debug)]
pub struct FakeGcp {
    child: Child,
    root: PathBuf,
    pub port: u16,
}

impl FakeGcp {
    pub const TOKEN: &'static str = "ya29.serval-test-token";

    pub fn start(root: &Path) -> Self {
        let lease = lease_port();
        let port = lease.port();
        let mut child = Command::new("python3")
            .arg(repo_root().join("tests/python/gcp.py"))
            .arg(root)
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/python/gcp.py");
        wait_listening("127.0.0.1", port, &mut child, "gcp.py");
        Self {
            child,
            root: root.to_path_buf(),
            port,
        }
    }

    /// `host:port`, as `GCE_METADATA_HOST` takes it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What the server recorded so far, one line each: `token issued`, `refused <bucket>
    /// (<authorization>)`.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join(".log")).unwrap_or_default()
    }
}

impl Drop for FakeGcp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tests/python/oci_registry.py`: an OCI registry's pull API with token authentication,
/// serving `root/<repo>/<tag>/<arch>/` trees as multi-platform images.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    pub port: u16,
}

impl Registry {
    pub fn start(root: &Path, user: &str, password: &str) -> Self {
        let lease = lease_port();
        let port = lease.port();
        let mut child = Command::new("python3")
            .arg(repo_root().join("tests/python/oci_registry.py"))
            .arg(root)
            .args([&port.to_string(), user, password])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/python/oci_registry.py");
        wait_listening("127.0.0.1", port, &mut child, "oci_registry.py");
        Self { child, port }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
