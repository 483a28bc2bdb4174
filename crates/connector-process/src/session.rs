//! One running connector program: its standard input fed by a writer thread, its standard
//! output read line by line by a reader thread into a small bounded channel (so a program that
//! writes faster than idsync stores waits: backpressure, never a growing buffer), and its
//! standard error drained by a third thread into idsync's log, keeping the last lines for error
//! messages. Every wait has the configured timeout; every way out kills the program's process
//! group and reaps it.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Lines of standard output waiting for idsync at most (each at most `max_line_bytes`).
const OUTPUT_LINES_BUFFERED: usize = 16;
/// A line of standard error longer than this is cut for the log.
const STDERR_LINE_BYTES: usize = 4096;
/// The environment a program keeps from idsync's (everything else, idsync's own secrets among
/// it, is not passed on); `environment` adds to it.
const KEPT_ENVIRONMENT: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"];

pub struct Limits {
    pub timeout: Duration,
    pub stderr_lines: usize,
    pub max_stderr_bytes: u64,
    pub max_line_bytes: usize,
}

/// What the reading threads report.
enum Event {
    /// Line number (from 1) and its text.
    Line(usize, Vec<u8>),
    /// Line `n` is longer than the limit.
    TooLong(usize),
    /// Standard output ended.
    Eof,
    ReadError(String),
    /// Standard error passed the byte limit.
    StderrFlood,
}

/// Why a read did not give a line.
pub enum ReadFailure {
    Timeout,
    Eof,
    TooLong(usize),
    Read(String),
    StderrFlood,
}

pub struct Session {
    child: Child,
    pgid: i32,
    input: Option<SyncSender<Vec<u8>>>,
    events: Receiver<Event>,
    tail: Arc<Mutex<VecDeque<String>>>,
    stderr_done: Receiver<()>,
    pub limits: Limits,
    /// The last line number read.
    pub line: usize,
    /// The command, for messages.
    pub command: String,
    ended: bool,
}

impl Session {
    pub fn spawn(
        connector: &str,
        command: &[String],
        working_directory: &Path,
        environment: &[(String, String)],
        limits: Limits,
    ) -> Result<Self, String> {
        let (program, args) = command
            .split_first()
            .ok_or_else(|| "`command` is empty".to_owned())?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(working_directory)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout kills what it started too.
            .process_group(0);
        for k in KEPT_ENVIRONMENT {
            if let Some(v) = std::env::var_os(k) {
                cmd.env(k, v);
            }
        }
        for (k, v) in environment {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|e| {
            format!(
                "cannot start `{program}` (in {}): {e}",
                working_directory.display()
            )
        })?;
        let pgid = child.id() as i32;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");

        let (input, input_rx) = mpsc::sync_channel::<Vec<u8>>(2);
        std::thread::Builder::new()
            .name(format!("{connector}-stdin"))
            .spawn(move || {
                let mut stdin = stdin;
                for chunk in input_rx {
                    if stdin.write_all(&chunk).and_then(|_| stdin.flush()).is_err() {
                        // The program stopped reading (exited): the reader sees it end.
                        break;
                    }
                }
            })
            .map_err(|e| e.to_string())?;

        let (tx, events) = mpsc::sync_channel(OUTPUT_LINES_BUFFERED);
        let max_line = limits.max_line_bytes;
        let out_tx = tx.clone();
        std::thread::Builder::new()
            .name(format!("{connector}-stdout"))
            .spawn(move || read_output(stdout, max_line, out_tx))
            .map_err(|e| e.to_string())?;

        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (done_tx, stderr_done) = mpsc::channel();
        {
            let tail = tail.clone();
            let name = connector.to_owned();
            let keep = limits.stderr_lines.max(1);
            let limit = limits.max_stderr_bytes;
            std::thread::Builder::new()
                .name(format!("{connector}-stderr"))
                .spawn(move || {
                    read_stderr(stderr, &name, keep, limit, &tail, tx);
                    let _ = done_tx.send(());
                })
                .map_err(|e| e.to_string())?;
        }
        Ok(Self {
            child,
            pgid,
            input: Some(input),
            events,
            tail,
            stderr_done,
            limits,
            line: 0,
            command: command.join(" "),
            ended: false,
        })
    }

    /// Sends one message (a line).
    pub fn send(&mut self, mut line: Vec<u8>) -> Result<(), ReadFailure> {
        line.push(b'\n');
        let input = self.input.as_ref().ok_or(ReadFailure::Eof)?;
        // The writer thread holds at most two messages: a program that does not read is caught
        // by the timeout of the answer idsync then waits for.
        let deadline = Instant::now() + self.limits.timeout;
        let mut line = line;
        loop {
            match input.try_send(line) {
                Ok(()) => return Ok(()),
                Err(mpsc::TrySendError::Full(l)) => {
                    if Instant::now() >= deadline {
                        return Err(ReadFailure::Timeout);
                    }
                    line = l;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(mpsc::TrySendError::Disconnected(_)) => return Err(ReadFailure::Eof),
            }
        }
    }

    /// The next line of standard output, waiting at most the timeout.
    pub fn next_line(&mut self) -> Result<(usize, Vec<u8>), ReadFailure> {
        match self.events.recv_timeout(self.limits.timeout) {
            Ok(Event::Line(n, text)) => {
                self.line = n;
                Ok((n, text))
            }
            Ok(Event::TooLong(n)) => Err(ReadFailure::TooLong(n)),
            Ok(Event::Eof) | Err(RecvTimeoutError::Disconnected) => Err(ReadFailure::Eof),
            Ok(Event::ReadError(e)) => Err(ReadFailure::Read(e)),
            Ok(Event::StderrFlood) => Err(ReadFailure::StderrFlood),
            Err(RecvTimeoutError::Timeout) => Err(ReadFailure::Timeout),
        }
    }

    /// Kills the program (and what it started) and reaps it; returns its exit status when it
    /// had already exited by itself.
    pub fn kill(&mut self) -> Option<std::process::ExitStatus> {
        if self.ended {
            return None;
        }
        self.ended = true;
        self.input = None;
        let exited = self.child.try_wait().ok().flatten();
        // SAFETY: kill(2) on our own child's process group; no memory is touched.
        unsafe {
            libc::kill(-self.pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
        exited
    }

    /// Waits at most `d` for the program to exit by itself (its output ended).
    pub fn wait_exit(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    /// Ends the session politely: standard input closes, and the program has the timeout to
    /// exit before it is killed. Its process group is killed either way, so nothing it started
    /// outlives it.
    pub fn close(&mut self) {
        if self.ended {
            return;
        }
        self.input = None;
        let deadline = Instant::now() + self.limits.timeout;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        self.kill();
    }

    /// The last lines of standard error, after the program is gone (its last words included).
    pub fn stderr_tail(&mut self) -> Vec<String> {
        if self.ended {
            let _ = self.stderr_done.recv_timeout(Duration::from_secs(2));
        }
        self.tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

fn read_output(stdout: impl Read, max_line: usize, tx: SyncSender<Event>) {
    let mut r = BufReader::with_capacity(1 << 16, stdout);
    let mut n = 0usize;
    loop {
        n += 1;
        let mut line = Vec::new();
        match read_capped(&mut r, &mut line, max_line) {
            Ok(Capped::Eof) => {
                let _ = tx.send(Event::Eof);
                return;
            }
            Ok(Capped::Line) => {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if tx.send(Event::Line(n, line)).is_err() {
                    return;
                }
            }
            Ok(Capped::TooLong) => {
                let _ = tx.send(Event::TooLong(n));
                return;
            }
            Err(e) => {
                let _ = tx.send(Event::ReadError(e.to_string()));
                return;
            }
        }
    }
}

enum Capped {
    Line,
    Eof,
    TooLong,
}

/// Reads one line (without its newline) of at most `max` bytes.
fn read_capped(r: &mut impl BufRead, line: &mut Vec<u8>, max: usize) -> std::io::Result<Capped> {
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            // A last line without a newline still counts.
            return Ok(if line.is_empty() {
                Capped::Eof
            } else {
                Capped::Line
            });
        }
        let (chunk, found) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if line.len() + chunk.len() > max {
            return Ok(Capped::TooLong);
        }
        line.extend_from_slice(chunk);
        let used = found.unwrap_or(buf.len());
        r.consume(used);
        if found.is_some() {
            return Ok(Capped::Line);
        }
    }
}

fn read_stderr(
    stderr: impl Read,
    connector: &str,
    keep: usize,
    limit: u64,
    tail: &Mutex<VecDeque<String>>,
    tx: SyncSender<Event>,
) {
    let mut r = BufReader::with_capacity(1 << 14, stderr);
    let mut total: u64 = 0;
    let mut flooded = false;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        // Lines are cut for the log; the rest of a long line is read and dropped.
        let mut cut = false;
        let ended = loop {
            let chunk = match r.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break true,
            };
            if chunk.is_empty() {
                break true;
            }
            let (part, found) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (&chunk[..i], Some(i + 1)),
                None => (chunk, None),
            };
            let room = STDERR_LINE_BYTES.saturating_sub(buf.len());
            buf.extend_from_slice(&part[..part.len().min(room)]);
            cut |= part.len() > room;
            let used = found.unwrap_or(chunk.len());
            total += used as u64;
            r.consume(used);
            if found.is_some() {
                break false;
            }
            if total > limit {
                break false;
            }
        };
        if ended && buf.is_empty() {
            return;
        }
        if flooded {
            if ended {
                return;
            }
            continue;
        }
        let mut text = String::from_utf8_lossy(&buf)
            .trim_end_matches('\r')
            .to_owned();
        if cut {
            text.push_str(" […]");
        }
        tracing::info!(target: "idsync::connector", connector, "{text}");
        if let Ok(mut t) = tail.lock() {
            if t.len() == keep {
                t.pop_front();
            }
            t.push_back(text);
        }
        if total > limit {
            flooded = true;
            let _ = tx.send(Event::StderrFlood);
        }
        if ended {
            return;
        }
    }
}
