//! Errors, with the exit code each maps to: 2 for bad input (nothing was touched), 1 for a
//! failure while reading or changing the host.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or environment variable with a value we cannot use.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: String,
    },
    /// A command-line problem reported by the parser (unknown flag, missing value…).
    #[error("{0}")]
    Usage(String),
    /// `--help`: not a failure; the text goes to stdout.
    #[error("{0}")]
    Help(String),
    /// An istio-iptables option whose behaviour Ferry does not implement.
    #[error("{flag} is not supported by ferry-iptables: {why}")]
    Unsupported {
        flag: &'static str,
        why: &'static str,
    },
    /// A program we need is not installed.
    #[error("`{program}` not found in PATH; it is needed to {purpose}")]
    MissingProgram {
        program: String,
        purpose: &'static str,
    },
    /// The kernel refused: no CAP_NET_ADMIN in this network namespace.
    #[error(
        "`{command}` was refused (no CAP_NET_ADMIN?): run ferry-iptables as root, or with \
         CAP_NET_ADMIN and CAP_NET_RAW, in the pod's network namespace\n{stderr}"
    )]
    Permission { command: String, stderr: String },
    /// A program ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    /// A program could not be started.
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    /// Reading the host's state (addresses, resolv.conf, namespaces) failed.
    #[error("{0}")]
    Host(String),
    /// Applying failed part way; what was applied has been removed again.
    #[error("{cause}\nnothing was left applied: the rules added before the failure were removed")]
    RolledBack { cause: Box<Error> },
    /// Applying failed part way and removing the partial state failed too.
    #[error("{cause}\nremoving the partially applied rules also failed: {rollback}")]
    RollbackFailed {
        cause: Box<Error>,
        rollback: Box<Error>,
    },
}

impl Error {
    pub fn invalid(what: &'static str, value: &str, reason: impl Into<String>) -> Error {
        Error::Invalid {
            what,
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// 2 when the input was refused before anything was touched, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Help(_) => 0,
            Error::Invalid { .. } | Error::Usage(_) | Error::Unsupported { .. } => 2,
            _ => 1,
        }
    }
}
