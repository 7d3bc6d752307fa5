//! One of the calendar's binaries run as a child process: its stderr (JSON log lines) captured
//! on a background thread, waiting for a line, a graceful stop (SIGTERM) and a hard one
//! (SIGKILL). Dropping a [`Process`] kills it, so a failing test or an interrupted benchmark
//! leaves nothing running; when the thread is panicking, the drop also prints the end of the
//! process's log.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

/// The capacity of the buffer a process's stderr is read through.
const STDERR_BUFFER: usize = 1 << 20;
/// The capacity asked for a process's stderr pipe (Linux's limit for unprivileged processes,
/// `/proc/sys/fs/pipe-max-size`, is 1 MiB by default).
#[cfg(target_os = "linux")]
const STDERR_PIPE: usize = 1 << 20;

/// How many of its last log lines a process shows in an error.
const TAIL_SHOWN: usize = 40;

/// Why a process could not be started, did not log what was awaited, or did not stop well.
/// The messages carry the end of the process's log where it has one.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The binary is not where it should be.
    #[error(
        "{path} is missing: build the workspace's binaries first (cargo build --workspace --bins, \
         with --release for the benchmark)"
    )]
    Missing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The executable running this code has no usable path.
    #[error("cannot locate the running executable: {0}")]
    CurrentExe(#[source] std::io::Error),
    /// The process could not be spawned, signalled or waited for.
    #[error("{name}: {action}: {source}")]
    Io {
        /// The process.
        name: String,
        /// What failed.
        action: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The process exited before logging what was awaited.
    #[error("{name} exited before logging {what}:\n{tail}")]
    Exited {
        /// The process.
        name: String,
        /// What was awaited.
        what: String,
        /// The end of its log.
        tail: String,
    },
    /// The awaited line did not come in time.
    #[error("{name} did not log {what} within {timeout:?}:\n{tail}")]
    Timeout {
        /// The process.
        name: String,
        /// What was awaited.
        what: String,
        /// How long it was awaited.
        timeout: Duration,
        /// The end of its log.
        tail: String,
    },
    /// A line said where the process listens, but with no readable address.
    #[error("{name}: no address in {line}")]
    NoAddress {
        /// The process.
        name: String,
        /// The line.
        line: Value,
    },
    /// The process did not stop in time after SIGTERM, or stopped with a failure.
    #[error("{name} {problem} after SIGTERM:\n{tail}")]
    BadStop {
        /// The process.
        name: String,
        /// What went wrong.
        problem: String,
        /// The end of its log.
        tail: String,
    },
}

/// The directory of the workspace's binaries next to the running executable: its own
/// directory for a binary (`target/<profile>/calendar-bench`), the parent of `deps` for a test
/// (`target/<profile>/deps/it-…`).
pub fn binary_dir() -> Result<PathBuf, ProcessError> {
    let exe = std::env::current_exe().map_err(ProcessError::CurrentExe)?;
    let directory = exe.parent().ok_or_else(|| {
        ProcessError::CurrentExe(std::io::Error::other("the executable has no directory"))
    })?;
    Ok(
        if directory.file_name().is_some_and(|name| name == "deps") {
            directory.parent().unwrap_or(directory).to_path_buf()
        } else {
            directory.to_path_buf()
        },
    )
}

/// The path of one of the workspace's binaries, built next to the running executable (see
/// [`binary_dir`]).
pub fn binary(name: &str) -> Result<PathBuf, ProcessError> {
    let path = binary_dir()?.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ProcessError::Missing { path })
    }
}

/// What a process wrote to stderr: one entry per line, a JSON object where the line is one,
/// otherwise the line as a JSON string (a panic message, a usage error).
#[derive(Debug, Default)]
struct Captured {
    lines: Vec<Value>,
    /// Lines counted rather than kept (see [`Process::start_counting`]).
    counted: u64,
    /// Whether stderr reached its end (the process exited).
    closed: bool,
}

/// The captured lines and a signal that changes whenever a line arrives or stderr closes.
#[derive(Debug)]
struct Log {
    captured: Mutex<Captured>,
    changed: watch::Sender<()>,
}

impl Log {
    fn captured(&self) -> MutexGuard<'_, Captured> {
        // A poisoned lock only means a reader panicked; what it captured is still good.
        self.captured
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Captures `stderr` into `log` on a thread of its own, one entry per line (the lines
/// containing `counted` only counted), until it closes.
fn read_stderr(
    name: &str,
    stderr: ChildStderr,
    counted: Option<String>,
    log: Arc<Log>,
) -> std::io::Result<JoinHandle<()>> {
    // A pipe of 1 MiB rather than 64 KiB (Linux), read through a buffer as large: a process
    // writing many lines at once (the sender, tens of thousands of notifications a second)
    // waits on its pipe when its reader falls behind. Refused (a lower limit), the default
    // pipe serves, only with more waits.
    #[cfg(target_os = "linux")]
    let _ = rustix::pipe::fcntl_setpipe_size(&stderr, STDERR_PIPE);
    std::thread::Builder::new()
        .name(format!("{name} stderr"))
        .spawn(move || {
            let mut stderr = BufReader::with_capacity(STDERR_BUFFER, stderr);
            let mut bytes = Vec::new();
            while matches!(stderr.read_until(b'\n', &mut bytes), Ok(1..)) {
                let line = String::from_utf8_lossy(&bytes);
                let line = line.trim_end_matches(['\n', '\r']);
                if counted
                    .as_ref()
                    .is_some_and(|counted| line.contains(counted))
                {
                    log.captured().counted += 1;
                } else {
                    let entry = serde_json::from_str::<Value>(line)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| Value::String(line.to_owned()));
                    log.captured().lines.push(entry);
                    log.changed.send_replace(());
                }
                bytes.clear();
            }
            log.captured().closed = true;
            log.changed.send_replace(());
        })
}

/// A running (or stopped) child process with its captured stderr.
#[derive(Debug)]
pub struct Process {
    /// How messages name it (`sender-2`).
    name: String,
    child: Child,
    log: Arc<Log>,
    reader: Option<JoinHandle<()>>,
    /// How it ended, once it has.
    exit: Option<ExitStatus>,
}

impl Process {
    /// Starts `binary` with `args` and exactly the environment `env` (nothing inherited), its
    /// stdout discarded and its stderr captured.
    pub fn start(
        name: &str,
        binary: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self, ProcessError> {
        Self::start_counting(name, binary, args, env, None)
    }

    /// Like [`start`](Self::start), but the lines containing `counted` (a process that logs a
    /// line per notification, under load) are only counted ([`counted`](Self::counted)), not
    /// parsed or kept.
    pub fn start_counting(
        name: &str,
        binary: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        counted: Option<&str>,
    ) -> Result<Self, ProcessError> {
        let counted = counted.map(str::to_owned);
        let io = |action| {
            let name = name.to_owned();
            move |source| ProcessError::Io {
                name,
                action,
                source,
            }
        };
        let mut child = Command::new(binary)
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io("cannot start it"))?;
        let log = Arc::new(Log {
            captured: Mutex::new(Captured::default()),
            changed: watch::Sender::new(()),
        });
        let reader = match child.stderr.take() {
            Some(stderr) => read_stderr(name, stderr, counted, log.clone()),
            None => Err(std::io::Error::other("stderr is not piped")),
        };
        let reader = match reader {
            Ok(reader) => reader,
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io("cannot read its stderr")(error));
            }
        };
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
            reader: Some(reader),
            exit: None,
        })
    }

    /// Its name in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running: not killed, not stopped, and it has not exited by itself
    /// (crashed).
    pub fn is_running(&mut self) -> bool {
        // The exit status stays with the child once collected, for a later stop to report.
        self.exit.is_none() && matches!(self.child.try_wait(), Ok(None))
    }

    /// How many lines were counted rather than kept (see
    /// [`start_counting`](Self::start_counting)).
    pub fn counted(&self) -> u64 {
        self.log.captured().counted
    }

    /// Calls `read` with every line captured so far.
    pub fn with_lines<T>(&self, read: impl FnOnce(&[Value]) -> T) -> T {
        read(&self.log.captured().lines)
    }

    /// The first line (captured so far or within `timeout`) that `matches`; an error with the
    /// end of the log if none comes, or if the process exits first.
    pub async fn wait_for_line(
        &self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<Value, ProcessError> {
        let deadline = Instant::now() + timeout;
        let mut changed = self.log.changed.subscribe();
        let mut seen = 0;
        loop {
            changed.mark_unchanged();
            {
                let captured = self.log.captured();
                if let Some(line) = captured.lines[seen..].iter().find(|line| matches(line)) {
                    return Ok(line.clone());
                }
                seen = captured.lines.len();
                if captured.closed {
                    drop(captured);
                    return Err(ProcessError::Exited {
                        name: self.name.clone(),
                        what: what.to_owned(),
                        tail: self.tail(),
                    });
                }
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                return Err(ProcessError::Timeout {
                    name: self.name.clone(),
                    what: what.to_owned(),
                    timeout,
                    tail: self.tail(),
                });
            }
        }
    }

    /// The `address` field of the first line whose message is `message` ("gRPC server
    /// listening", "metrics endpoint listening"): where a process started on port 0 listens.
    pub async fn listening_address(&self, message: &str) -> Result<SocketAddr, ProcessError> {
        let line = self
            .wait_for_line(message, Duration::from_secs(30), |line| {
                line["message"] == message
            })
            .await?;
        line["address"]
            .as_str()
            .and_then(|address| address.parse().ok())
            .ok_or_else(|| ProcessError::NoAddress {
                name: self.name.clone(),
                line,
            })
    }

    /// Kills it with SIGKILL, waits for it and for the rest of its stderr.
    pub fn kill(&mut self) {
        if self.exit.is_none() {
            // Fails only if it has already exited, which the wait below collects.
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    /// Asks it to stop with SIGTERM and waits for it to exit, at most `timeout`; an error
    /// unless it exits successfully in time (a graceful shutdown).
    pub async fn terminate(&mut self, timeout: Duration) -> Result<(), ProcessError> {
        if self.exit.is_some() {
            return Ok(());
        }
        let io = |action| {
            let name = self.name.clone();
            move |source| ProcessError::Io {
                name,
                action,
                source,
            }
        };
        let signalled = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .map_err(io("cannot run kill -TERM"))?;
        if !signalled.success() {
            return Err(io("cannot send SIGTERM")(std::io::Error::other(format!(
                "kill -TERM ended with {signalled}"
            ))));
        }
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(io("cannot read its exit status"))?
            {
                break status;
            }
            if Instant::now() >= deadline {
                return Err(ProcessError::BadStop {
                    name: self.name.clone(),
                    problem: format!("did not stop within {timeout:?}"),
                    tail: self.tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        self.exit = Some(status);
        if let Some(reader) = self.reader.take() {
            let _ = tokio::task::spawn_blocking(move || reader.join()).await;
        }
        if status.success() {
            Ok(())
        } else {
            Err(ProcessError::BadStop {
                name: self.name.clone(),
                problem: format!("ended with {status}"),
                tail: self.tail(),
            })
        }
    }

    /// The last lines of its log, one per line, for error messages.
    pub fn tail(&self) -> String {
        self.with_lines(|lines| {
            lines[lines.len().saturating_sub(TAIL_SHOWN)..]
                .iter()
                .map(|line| format!("  {}: {line}", self.name))
                .collect::<Vec<_>>()
                .join("\n")
        })
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- the end of {}'s log ---\n{}", self.name, self.tail());
        }
    }
}
