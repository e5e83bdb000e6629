//! Pre-shared keys from a mesh secret, with real daemons in namespaces: a mesh sharing the
//! secret forms; a node restarted with the wrong secret reaches nobody (no handshake it starts
//! or answers completes) while the others are untouched; with the right secret it is back.

mod common;

use common::{require_root, running_lab};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

fn write_secret(path: &Path, text: &str) {
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    writeln!(f, "{text}").unwrap();
}

#[test]
fn a_node_with_the_wrong_mesh_secret_never_completes_a_handshake() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.secret");
    let bad = dir.path().join("bad.secret");
    write_secret(&good, "correct horse battery staple, mesh one");
    write_secret(&bad, "correct horse battery staple, mesh two");
    // inherited by the lab's daemons when they start (settings' environment layer)
    std::env::set_var("WIREMESH_MESH_SECRET", &good);
    let mut lab = running_lab("full-dual-stack.toml");
    let matrix = lab.ping_matrix(Duration::from_secs(5)).unwrap();
    assert!(
        matrix.all_ok(),
        "the mesh forms with a shared secret\n{matrix}"
    );

    std::env::set_var("WIREMESH_MESH_SECRET", &bad);
    lab.restart_daemon("d").unwrap();
    let d = lab.overlay_addrs("d").unwrap()[0];
    let a = lab.overlay_addrs("a").unwrap()[0];
    let b = lab.overlay_addrs("b").unwrap()[0];
    for _ in 0..4 {
        assert_eq!(lab.ping("a", d, Duration::from_secs(1)).unwrap(), None);
        assert_eq!(lab.ping("d", a, Duration::from_secs(1)).unwrap(), None);
    }
    assert!(lab.ping("a", b, Duration::from_secs(2)).unwrap().is_some());

    std::env::set_var("WIREMESH_MESH_SECRET", &good);
    lab.restart_daemon("d").unwrap();
    let matrix = lab.ping_matrix(Duration::from_secs(5)).unwrap();
    assert!(matrix.all_ok(), "d is back with the right secret\n{matrix}");
    lab.down().unwrap();
}
