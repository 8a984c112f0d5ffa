//! Running the host's tools (iptables-restore, nft, ip), with failures mapped to what the
//! operator has to do about them.

use crate::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What a finished command printed.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

fn describe(program: &str, args: &[&str]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

/// Runs `program args`, feeding `stdin`, and reports how it ended (a non-zero exit is not an
/// error here; a program that cannot be started is).
pub fn output(program: &str, args: &[&str], stdin: Option<&str>) -> Result<Outcome, Error> {
    let command = describe(program, args);
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| spawn_error(program, &command, e))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A program that exits early closes the pipe; its exit status tells why.
        let _ = pipe.write_all(input.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| spawn_error(program, &command, e))?;
    Ok(Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs `program args` and returns its stdout; a failure becomes an [`Error`].
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, Error> {
    let o = output(program, args, stdin)?;
    if o.ok() {
        return Ok(o.stdout);
    }
    Err(failure(&describe(program, args), &o))
}

/// The error for a command that ran and failed.
pub fn failure(command: &str, o: &Outcome) -> Error {
    let stderr = o.stderr.trim().to_string();
    let lower = stderr.to_lowercase();
    if lower.contains("permission denied")
        || lower.contains("operation not permitted")
        || lower.contains("you must be root")
    {
        return Error::Permission {
            command: command.to_string(),
            stderr,
        };
    }
    Error::Command {
        command: command.to_string(),
        status: match o.code {
            Some(c) => format!("exit {c}"),
            None => "killed by a signal".to_string(),
        },
        stderr,
    }
}

fn spawn_error(program: &str, command: &str, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        return Error::MissingProgram {
            program: program.to_string(),
            purpose: "change the pod's packet filter",
        };
    }
    Error::Spawn {
        command: command.to_string(),
        source: e,
    }
}

/// Where `program` is on PATH.
pub fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Fails unless every program is installed: checked before anything is changed.
pub fn require(programs: &[String], purpose: &'static str) -> Result<(), Error> {
    match programs.iter().find(|p| find(p).is_none()) {
        Some(p) => Err(Error::MissingProgram {
            program: p.clone(),
            purpose,
        }),
        None => Ok(()),
    }
}
