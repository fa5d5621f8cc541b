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
