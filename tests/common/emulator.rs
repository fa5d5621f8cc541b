//! The CDSE emulator (`scripts/emulate-cdse`: s3s-fs + stac-fastapi-pgstac on PostgreSQL) run by
//! tests, with known test credentials written to a private AWS config the way users keep theirs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

/// Known secrets: no log line or error may contain them.
pub const ACCESS_KEY: &str = "AKIADATACUBETEST7Q2X";
pub const SECRET_KEY: &str = "dcSecret/9fJk2LmN0pQrStUvWxYz+testing";

pub struct Emulator {
    child: Child,
    lines: Receiver<String>,
    pub stac_url: String,
    pub s3_endpoint: String,
    pub run_dir: PathBuf,
    /// Holds `config` and `credentials` (profile `cdse`).
    pub aws_dir: PathBuf,
}

impl Emulator {
    /// Starts the emulator for `archive`; `work` receives its run directory and AWS files.
    pub fn start(archive: &Path, work: &Path) -> Emulator {
        Self::start_with(archive, work, &[])
    }

    /// With more `scripts/emulate-cdse` options (`--quota`, …).
    pub fn start_with(archive: &Path, work: &Path, args: &[&str]) -> Emulator {
        let run_dir = work.join("emulator");
        let _ = std::fs::remove_dir_all(&run_dir);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/emulate-cdse");
        let mut child = Command::new(&script)
            .arg(archive)
            .arg("--dir")
            .arg(&run_dir)
            .args(args)
            .env("EMULATOR_ACCESS_KEY", ACCESS_KEY)
            .env("EMULATOR_SECRET_KEY", SECRET_KEY)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting scripts/emulate-cdse");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut vars = std::collections::HashMap::new();
        loop {
            match lines.recv_timeout(Duration::from_secs(180)) {
                Ok(l) if l == "READY" => break,
                Ok(l) => {
                    if let Some((k, v)) = l.split_once('=') {
                        vars.insert(k.trim().to_string(), v.trim().to_string());
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    panic!("emulate-cdse did not get ready: {e:?}");
                }
            }
        }
        let s3_endpoint = vars["S3_ENDPOINT"].clone();
        let aws_dir = work.join("aws");
        std::fs::create_dir_all(&aws_dir).unwrap();
        std::fs::write(
            aws_dir.join("config"),
            format!("[profile cdse]\nendpoint_url = {s3_endpoint}\nregion = default\n"),
        )
        .unwrap();
        std::fs::write(
            aws_dir.join("credentials"),
            format!(
                "[cdse]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
            ),
        )
        .unwrap();
        Emulator {
            child,
            lines,
            stac_url: vars["STAC_URL"].clone(),
            s3_endpoint,
            run_dir,
            aws_dir,
        }
    }

    /// The environment that points the AWS SDK at this emulator's profile files (and nothing else).
    pub fn aws_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "AWS_CONFIG_FILE".into(),
                self.aws_dir.join("config").display().to_string(),
            ),
            (
                "AWS_SHARED_CREDENTIALS_FILE".into(),
                self.aws_dir.join("credentials").display().to_string(),
            ),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ]
    }

    /// Sets the AWS environment in this process (for library-level tests).
    pub fn set_aws_env(&self) {
        for (k, v) in self.aws_env() {
            std::env::set_var(k, v);
        }
    }

    /// The bucket directory behind `s3://BUCKET` (s3s-fs stores objects as files).
    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.run_dir.join("s3").join(bucket)
    }

    fn signal_and_wait(&mut self, sig: i32, line: &str) {
        super::mount::signal(self.child.id(), sig);
        loop {
            match self.lines.recv_timeout(Duration::from_secs(30)) {
                Ok(l) if l == line => return,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!("emulate-cdse: no {line}"),
                Err(e) => panic!("emulate-cdse: {e:?}"),
            }
        }
    }

    /// Kills the S3 server (the STAC API stays up).
    pub fn stop_s3(&mut self) {
        self.signal_and_wait(libc::SIGUSR1, "S3_STOPPED");
    }

    /// Starts the S3 server again on the same port.
    pub fn start_s3(&mut self) {
        self.signal_and_wait(libc::SIGUSR2, "S3_STARTED");
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        super::mount::signal(self.child.id(), libc::SIGTERM);
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
