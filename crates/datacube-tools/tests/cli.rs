//! The tools binary answers on its own and through `datacube` (which hands the tool commands to
//! it). Being an integration test also makes cargo build the binary before any test runs, so the
//! root package's tests that call `datacube bench …` find it.

use std::process::Command;

#[test]
fn tools_answer_directly_and_through_datacube() {
    let tools = env!("CARGO_BIN_EXE_datacube-tools");
    let out = Command::new(tools).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    for cmd in ["fixture", "bench", "bench-mount", "bench-intake", "convert"] {
        assert!(help.contains(cmd), "{cmd} missing from: {help}");
    }
    // A bad value is rejected by the parser, not clamped.
    let out = Command::new(tools)
        .args(["fixture", "--out", "/nonexistent/x", "--scenes", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value"));
}

/// `fixture --collection sentinel-2-l2a` writes a Level-2A archive (and only that), and a rerun
/// finds it complete.
#[test]
fn fixture_writes_the_level_its_collection_names() {
    let tools = env!("CARGO_BIN_EXE_datacube-tools");
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-l2a-fixture");
    let _ = std::fs::remove_dir_all(&out);
    let run = || {
        let o = Command::new(tools)
            .args(["fixture", "--collection", "sentinel-2-l2a", "--scenes", "1"])
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(
            o.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        stdout
    };
    let first = run();
    assert!(
        first.contains("(sentinel-2-l2a): 1 products written, 0 already present"),
        "{first}"
    );
    let items: Vec<_> = std::fs::read_dir(out.join("stac/sentinel-2-l2a"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(items.len(), 1);
    assert!(items[0].starts_with("S2A_MSIL2A_2024"), "{items:?}");
    assert!(out.join("Sentinel-2/MSI/L2A/2024/01/01").is_dir());
    assert!(!out.join("Sentinel-2/MSI/L1C").exists());
    assert!(!out.join("stac/sentinel-2-l1c").exists());
    let second = run();
    assert!(
        second.contains("0 products written, 1 already present"),
        "{second}"
    );
    std::fs::remove_dir_all(&out).unwrap();
}
