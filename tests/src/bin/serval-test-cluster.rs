//! The tests' one-node cluster, by hand: builds Serval's image from this checkout, starts the
//! cluster (tests/src/cluster/), prints how to reach it, and stops it, restoring the machine,
//! on Ctrl-C or SIGTERM. Run as root: `bash tools/cluster.sh`.

use serval_tests::cluster::{image, Cluster};

fn main() {
    let dir = std::env::temp_dir().join(format!("serval-cluster-images-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the image dir");
    let serval_image = dir.join("serval.tar");
    eprintln!("cluster: assembling Serval's image from this build");
    image::serval(&serval_image);
    let cluster = Cluster::start(&[serval_image]);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "The cluster is up.\n  export KUBECONFIG={}\n  Serval's image: {}:{} (imagePullPolicy IfNotPresent)\n\
         Ctrl-C stops it and restores the machine.",
        cluster.kubeconfig().display(),
        image::SERVAL_REPOSITORY,
        image::SERVAL_TAG,
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    });
    eprintln!("cluster: stopping");
    drop(cluster);
}
