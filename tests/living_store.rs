//! Real processes on one directory store: three mounts and an intake started together, scenes
//! arriving mid-run, a daily intake, `--refresh`, a mount killed with -9 mid-writeback. The store
//! must end equal to one clean intake of the final archive, and the surviving mounts must show
//! the new scenes without a remount.

mod common;

use std::os::unix::fs::FileExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::mount::{stat, Mounted};
use common::*;
use datacube::s2::bands::Resolution;

/// The consistency protocol's grace period for these processes (a minute in production).
const GRACE_ENV: (&str, &str) = ("DATACUBE_TEST_GRACE_MS", "1000");

/// Where the shared store is: a directory, or a prefix of the emulator's S3 bucket `cubes`.
struct StoreAt {
    /// `--store` and the arguments that reach it.
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// The store's files on disk (the bucket directory for S3).
    dir: std::path::PathBuf,
}

fn intake_cmd(archive: &std::path::Path, store: &StoreAt) -> Command {
    let mut c = Command::new(bin());
    c.args([
        "intake".to_string(),
        "--layout=chunked".to_string(),
        format!("--source=safe:{}", archive.display()),
        "--tiles=35VLH".into(),
        format!("--years={YEAR}"),
        "--no-progress".into(),
    ])
    .args(&store.args)
    .envs(store.env.iter().map(|(k, v)| (k, v)))
    .env(GRACE_ENV.0, GRACE_ENV.1)
    .env("RUST_LOG", "info");
    c
}

/// The `data` shape's time length of `res` as the file system shows it now.
fn shown_scenes(m: &Mounted, res: Resolution) -> u64 {
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(m.path(&format!("35VLH/{YEAR}/{}/data/zarr.json", res.name()))).unwrap(),
    )
    .unwrap();
    meta["shape"][0].as_u64().unwrap()
}

#[test]
fn mounts_and_intakes_share_a_growing_directory_store() {
    let dir = work_dir("living-store");
    let store = StoreAt {
        args: vec![format!("--store={}", dir.display())],
        env: Vec::new(),
        dir: dir.to_path_buf(),
    };
    run("living-dir", &store);
}

/// The same on an S3 store (the emulator's s3s-fs). Caveat: s3s-fs 0.14.1 checks `If-None-Match`
/// before writing rather than atomically, so two processes creating the same catalog generation
/// at the same instant could both "win" there (they would write the same scenes); AWS S3, Ceph RGW
/// (Allas) and MinIO decide atomically.
#[test]
fn mounts_and_intakes_share_a_growing_s3_store() {
    let work = work_dir("living-s3");
    let emu = common::emulator::Emulator::start(&fixture().archive, &work);
    let store = StoreAt {
        args: vec![
            "--store=s3://cubes/living".into(),
            "--store-profile=cdse".into(),
        ],
        env: emu.aws_env(),
        dir: emu.bucket_dir("cubes").join("living"),
    };
    run("living-s3", &store);
}

fn run(name: &str, store: &StoreAt) {
    let f = fixture();
    let archive = copy_archive(&format!("{name}-archive"));
    // The last two acquisitions arrive mid-run.
    let held = work_dir(&format!("{name}-held"));
    for p in &f.kept()[SCENES - 2..] {
        let dir = datacube_tools::fixture::product_dir(&archive, p);
        std::fs::rename(&dir, held.join(&p.product_id)).unwrap();
    }

    // Three mounts (refreshing every 2 s; the third holds chunks in its writeback queue) and an
    // intake, started together on the empty store.
    let mut first_intake = intake_cmd(&archive, store)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mount_dirs: Vec<_> = (0..3)
        .map(|i| work_dir(&format!("{name}-mount-{i}")))
        .collect();
    let mounts: Vec<Mounted> = (0..3)
        .map(|i| {
            let mut env = store.env.clone();
            env.push((GRACE_ENV.0.into(), GRACE_ENV.1.into()));
            if i == 2 {
                env.push(("DATACUBE_TEST_WRITEBACK_DELAY_MS".into(), "1500".into()));
            }
            let mut args = vec![
                "--source".to_string(),
                format!("safe:{}", archive.display()),
                "--refresh".into(),
                "2s".into(),
            ];
            let spec = store.args[0].trim_start_matches("--store=").to_string();
            args.extend(store.args[1..].iter().cloned());
            Mounted::start_with(&mount_dirs[i], &spec, &args, &env)
        })
        .collect();
    // All three resolve the year at once and read the whole 60 m array.
    std::thread::scope(|s| {
        for m in &mounts {
            s.spawn(move || {
                let (shape, data) = read_data(&m.mnt, Resolution::R60);
                assert_eq!(shape[0] as usize, SCENES - 2);
                assert_formula(f, Resolution::R60, &shape, &data, |_| true);
            });
        }
    });
    // The third reads 20 m and is killed while its queue still holds chunks.
    let victim = &mounts[2];
    let (shape, _) = read_data(&victim.mnt, Resolution::R20);
    assert_eq!(shape[0] as usize, SCENES - 2);
    let queued = stat(&victim.stats(), "/writeback/queue_jobs");
    assert!(queued > 0, "nothing queued to interrupt");
    let mut mounts = mounts;
    let victim = mounts.pop().unwrap();
    let stale = victim.mnt.clone();
    victim.kill9();
    // Its mount point is left stale, as after a crash; detach it (nothing else uses it).
    let _ = Command::new("fusermount3")
        .args(["-u", "-z", "-q"])
        .arg(&stale)
        .status();

    let st = first_intake.wait().unwrap();
    assert!(st.success(), "the first intake failed: {st}");

    // A process keeps the 10 m array's metadata open across the refresh that changes it.
    let held_meta = mounts[0].path(&format!("35VLH/{YEAR}/10m/data/zarr.json"));
    let held_file = std::fs::File::open(&held_meta).unwrap();
    let mut before = vec![0u8; 1 << 16];
    let n = held_file.read_at(&mut before, 0).unwrap();
    let before: serde_json::Value = serde_json::from_slice(&before[..n]).unwrap();
    assert_eq!(before["shape"][0].as_u64(), Some(SCENES as u64 - 2));

    // The two acquisitions arrive; the daily intake runs while the mounts refresh.
    for p in &f.kept()[SCENES - 2..] {
        std::fs::rename(
            held.join(&p.product_id),
            datacube_tools::fixture::product_dir(&archive, p),
        )
        .unwrap();
    }
    let out = intake_cmd(&archive, store).output().unwrap();
    assert!(
        out.status.success(),
        "the daily intake failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The surviving mounts show the new shape without a remount (their kernel caches were told).
    for m in &mounts {
        let t0 = Instant::now();
        while shown_scenes(m, Resolution::R10) != SCENES as u64 {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{} still shows {} scenes:\n{}",
                m.mnt.display(),
                shown_scenes(m, Resolution::R10),
                m.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let (shape, data) = read_data(&m.mnt, Resolution::R60);
        assert_eq!(shape[0] as usize, SCENES);
        assert_formula(f, Resolution::R60, &shape, &data, |_| true);
        let s = m.stats();
        assert_eq!(stat(&s, "/fs/year_errors"), 0, "{s}");
        assert!(stat(&s, "/fs/generations_adopted") >= 1, "{s}");
        assert!(
            !m.log_text().contains(&format!("resolving 35VLH/{YEAR}")),
            "a mount failed its year:\n{}",
            m.log_text()
        );
    }
    // The file held open does not go on with the new version's bytes: its reads fail (the
    // mount opens files without the daemon, so it cannot keep the old version for it), and the
    // log names it; opened again, it is the new version.
    let mut buf = vec![0u8; 1 << 16];
    let err = held_file.read_at(&mut buf, 0).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(
        mounts[0].log_text().contains(&format!(
            "/35VLH/{YEAR}/10m/data/zarr.json: EIO: a refresh changed this file"
        )),
        "{}",
        mounts[0].log_text()
    );
    assert_eq!(shown_scenes(&mounts[0], Resolution::R10), SCENES as u64);
    drop(held_file); // an open file would keep the mount busy at unmount
    for m in mounts {
        assert!(m.terminate().success());
    }

    // The store alone equals one clean intake of the final archive: every chunk the formula's for
    // the final catalog, every chunk recorded, nothing stale left by the killed mount.
    assert_same_store(intaken_store(), &store.dir);
    let spec = store.args[0].trim_start_matches("--store=");
    let info = Command::new(bin())
        .args(["info", "--json", spec])
        .args(&store.args[1..])
        .envs(store.env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["summary"]["chunks_missing"], 0, "{info}");
    let files = tree(&store.dir).len() as u64;
    assert_eq!(
        info["summary"]["objects"], files,
        "objects counted = files in the store"
    );
}
