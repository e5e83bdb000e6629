//! `wiremesh cni install` into temporary directories (no root needed): the conflist a runtime
//! reads, the plugin beside it, a second run that changes nothing, and a refusal that names the
//! directory it cannot write.

mod common;

use common::{text, wiremesh};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

fn install(net_d: &Path, bin: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "cni",
        "install",
        "--dir",
        net_d.to_str().unwrap(),
        "--bin-dir",
        bin.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    wiremesh(&args)
}

fn mtime(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

#[test]
fn install_writes_the_conflist_and_the_plugin_and_a_second_run_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (net_d, bin) = (tmp.path().join("net.d"), tmp.path().join("bin"));
    let args = ["--interface", "wm7", "--state-dir", "/run/wm-test"];
    let first = install(&net_d, &bin, &args);
    assert!(first.status.success(), "{}", text(&first));
    assert_eq!(
        String::from_utf8_lossy(&first.stdout)
            .matches("written ")
            .count(),
        2,
        "{}",
        text(&first)
    );

    let conflist_path = net_d.join("10-wiremesh.conflist");
    let conflist: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&conflist_path).unwrap()).unwrap();
    assert_eq!(conflist["cniVersion"], "1.0.0");
    assert_eq!(conflist["name"], "wiremesh");
    let plugins = conflist["plugins"].as_array().unwrap();
    assert_eq!(plugins.len(), 2);
    assert_eq!(plugins[0]["type"], "wiremesh-cni");
    assert_eq!(plugins[0]["subnetFile"], "/run/wm-test/wm7/subnet.json");
    assert_eq!(plugins[0]["ipMasq"], true);
    assert_eq!(plugins[1]["type"], "portmap");
    assert_eq!(plugins[1]["capabilities"]["portMappings"], true);

    let plugin = bin.join("wiremesh-cni");
    let built = Path::new(env!("CARGO_BIN_EXE_wiremesh-cni"));
    assert_eq!(
        std::fs::read(&plugin).unwrap(),
        std::fs::read(built).unwrap(),
        "the plugin is a copy of the one beside wiremesh"
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&plugin), 0o755);
    assert_eq!(mode(&conflist_path), 0o644);

    let before = (mtime(&plugin), mtime(&conflist_path));
    let second = install(&net_d, &bin, &args);
    assert!(second.status.success(), "{}", text(&second));
    let out = String::from_utf8_lossy(&second.stdout);
    assert_eq!(out.matches("unchanged ").count(), 2, "{out}");
    assert!(!out.contains("written "), "{out}");
    assert_eq!((mtime(&plugin), mtime(&conflist_path)), before);
    let names = |d: &Path| std::fs::read_dir(d).unwrap().count();
    assert_eq!(
        (names(&net_d), names(&bin)),
        (1, 1),
        "no temporary file is left"
    );

    // Another setting rewrites only the conflist.
    let third = install(&net_d, &bin, &["--interface", "wm7", "--ip-masq", "false"]);
    assert!(third.status.success(), "{}", text(&third));
    let out = String::from_utf8_lossy(&third.stdout);
    assert!(
        out.contains(&format!("written {}", conflist_path.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("unchanged {}", plugin.display())),
        "{out}"
    );
    let conflist: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&conflist_path).unwrap()).unwrap();
    assert_eq!(conflist["plugins"][0]["ipMasq"], false);
    assert_eq!(
        conflist["plugins"][0]["subnetFile"],
        "/run/wiremesh/wm7/subnet.json"
    );
}

#[test]
fn install_refuses_a_directory_it_cannot_write_and_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    // A regular file where a directory should be stops root as well as anyone else.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let blocked = file.join("net.d");
    let out = install(&blocked, &bin, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(blocked.to_str().unwrap()), "{err}");
    assert!(
        !bin.join("wiremesh-cni").exists(),
        "nothing is placed when a directory is refused"
    );

    // Permissions stop anyone but root.
    if unsafe { libc::geteuid() } != 0 {
        let ro = tmp.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        let out = install(&ro, &bin, &[]);
        assert!(!out.status.success(), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(ro.to_str().unwrap()) && err.contains("not writable"),
            "{err}"
        );
    }
}
