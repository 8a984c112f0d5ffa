//! Ferry's own log lines in Envoy's (spdlog's) pattern language: `--log-format` or the
//! bootstrap's `application_log_config.log_format` (text or JSON), Envoy's default pattern
//! otherwise, with `--log-format-escaped` escaping newlines.

use crate::clock::Civil;
use std::fmt::Write as _;
use std::sync::RwLock;
use std::time::SystemTime;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Envoy's default `--log-format`.
pub const DEFAULT: &str = "[%Y-%m-%d %T.%e][%t][%l][%n] [%g:%#] %v";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
    Center,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Flag {
        flag: char,
        pad: Option<(Align, usize, bool)>,
    },
}

/// A parsed spdlog pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(Vec<Piece>);

/// How each line is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFormat {
    Text(Pattern),
    /// A JSON object per line: each key's value is a pattern.
    Json(Vec<(String, Pattern)>),
}

const FLAGS: &str = "v_jtPnlLaAbBcCYDxmdHIMSefFprRTXzE%@sg#!^$";

impl Pattern {
    pub fn parse(s: &str) -> Result<Pattern, String> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                lit.push(c);
                continue;
            }
            let align = match chars.peek() {
                Some('-') => Some(Align::Left),
                Some('=') => Some(Align::Center),
                _ => None,
            };
            if align.is_some() {
                chars.next();
            }
            let mut width = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                width.push(*d);
                chars.next();
            }
            let truncate = !width.is_empty() && chars.peek() == Some(&'!');
            if truncate {
                chars.next();
            }
            let Some(flag) = chars.next() else {
                return Err(format!("log format '{s}' ends in '%'"));
            };
            if !FLAGS.contains(flag) {
                return Err(format!("log format '{s}': unknown flag %{flag}"));
            }
            if !lit.is_empty() {
                pieces.push(Piece::Lit(std::mem::take(&mut lit)));
            }
            let pad = match width.parse::<usize>() {
                Ok(w) => Some((align.unwrap_or(Align::Right), w, truncate)),
                Err(_) => None,
            };
            pieces.push(Piece::Flag { flag, pad });
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Ok(Pattern(pieces))
    }
}

/// One event's parts, as the flags read them.
struct Line<'a> {
    level: Level,
    logger: &'static str,
    file: &'a str,
    line: u32,
    module: &'a str,
    message: &'a str,
    at: Civil,
}

fn level_name(l: Level) -> (&'static str, &'static str) {
    match l {
        Level::TRACE => ("trace", "T"),
        Level::DEBUG => ("debug", "D"),
        Level::INFO => ("info", "I"),
        Level::WARN => ("warning", "W"),
        Level::ERROR => ("error", "E"),
    }
}

/// Envoy's logger (component) name for a Ferry module.
fn logger_for(target: &str) -> &'static str {
    let m = target.split("::").nth(1).unwrap_or("");
    match m {
        "xds" | "config" => "config",
        "cluster" => "upstream",
        "http" => "http",
        "listener" => "conn_handler",
        "admin" => "admin",
        "tls" => "connection",
        "tcp_proxy" => "filter",
        _ => "main",
    }
}

fn escape_newlines(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// `s` escaped for a JSON string (quotes, backslashes, control characters; other text as is).
pub(crate) fn json_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

fn flag(f: char, l: &Line<'_>, escaped: bool, out: &mut String) {
    let c = &l.at;
    let _ = match f {
        'v' if escaped => {
            escape_newlines(l.message, out);
            Ok(())
        }
        'v' => write!(out, "{}", l.message),
        '_' => {
            escape_newlines(l.message, out);
            Ok(())
        }
        'j' => {
            json_escape(l.message, out);
            Ok(())
        }
        // SAFETY: gettid has no preconditions.
        't' => write!(out, "{}", unsafe { libc::syscall(libc::SYS_gettid) }),
        'P' => write!(out, "{}", std::process::id()),
        'n' => write!(out, "{}", l.logger),
        'l' => write!(out, "{}", level_name(l.level).0),
        'L' => write!(out, "{}", level_name(l.level).1),
        'a' => write!(out, "{}", &c.weekday_name()[..3]),
        'A' => write!(out, "{}", c.weekday_name()),
        'b' => write!(out, "{}", &c.month_name()[..3]),
        'B' => write!(out, "{}", c.month_name()),
        'c' => {
            crate::clock::strftime("%c", c, out);
            Ok(())
        }
        'C' => write!(out, "{:02}", c.year.rem_euclid(100)),
        'Y' => write!(out, "{:04}", c.year),
        'D' | 'x' => write!(
            out,
            "{:02}/{:02}/{:02}",
            c.month,
            c.day,
            c.year.rem_euclid(100)
        ),
        'm' => write!(out, "{:02}", c.month),
        'd' => write!(out, "{:02}", c.day),
        'H' => write!(out, "{:02}", c.hour),
        'I' => write!(out, "{:02}", (c.hour + 11) % 12 + 1),
        'M' => write!(out, "{:02}", c.min),
        'S' => write!(out, "{:02}", c.sec),
        'e' => write!(out, "{:03}", c.nanos / 1_000_000),
        'f' => write!(out, "{:06}", c.nanos / 1_000),
        'F' => write!(out, "{:09}", c.nanos),
        'p' => write!(out, "{}", if c.hour < 12 { "AM" } else { "PM" }),
        'r' => write!(
            out,
            "{:02}:{:02}:{:02} {}",
            (c.hour + 11) % 12 + 1,
            c.min,
            c.sec,
            if c.hour < 12 { "AM" } else { "PM" }
        ),
        'R' => write!(out, "{:02}:{:02}", c.hour, c.min),
        'T' | 'X' => write!(out, "{:02}:{:02}:{:02}", c.hour, c.min, c.sec),
        'z' => write!(out, "+00:00"),
        'E' => write!(out, "{}", c.epoch),
        '%' => write!(out, "%"),
        '@' => write!(out, "{}:{}", l.file, l.line),
        's' => write!(out, "{}", l.file.rsplit('/').next().unwrap_or(l.file)),
        'g' => write!(out, "{}", l.file),
        '#' => write!(out, "{}", l.line),
        '!' => write!(out, "{}", l.module),
        // Colour range markers: Ferry writes no colours.
        _ => Ok(()),
    };
}

fn render(p: &Pattern, l: &Line<'_>, escaped: bool, out: &mut String) {
    for piece in &p.0 {
        match piece {
            Piece::Lit(s) => out.push_str(s),
            Piece::Flag { flag: f, pad: None } => flag(*f, l, escaped, out),
            Piece::Flag {
                flag: f,
                pad: Some((align, width, truncate)),
            } => {
                let mut v = String::new();
                flag(*f, l, escaped, &mut v);
                let n = v.chars().count();
                if n >= *width {
                    if *truncate {
                        v = v.chars().take(*width).collect();
                    }
                    out.push_str(&v);
                    continue;
                }
                let gap = width - n;
                let (before, after) = match align {
                    Align::Right => (gap, 0),
                    Align::Left => (0, gap),
                    Align::Center => (gap / 2, gap - gap / 2),
                };
                out.extend(std::iter::repeat_n(' ', before));
                out.push_str(&v);
                out.extend(std::iter::repeat_n(' ', after));
            }
        }
    }
}

struct Current {
    format: LogFormat,
    escaped: bool,
}

static CURRENT: RwLock<Option<Current>> = RwLock::new(None);

/// Sets the format of every line from now on.
pub fn set(format: LogFormat, escaped: bool) {
    if let Ok(mut c) = CURRENT.write() {
        *c = Some(Current { format, escaped });
    }
}

/// The tracing formatter that writes lines in the current format.
pub struct EnvoyFormat;

#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.insert_str(0, &format!("{value:?}"));
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl<S, N> FormatEvent<S, N> for EnvoyFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut msg = Message::default();
        event.record(&mut msg);
        let meta = event.metadata();
        let line = Line {
            level: *meta.level(),
            logger: logger_for(meta.target()),
            file: meta.file().unwrap_or(""),
            line: meta.line().unwrap_or(0),
            module: meta.module_path().unwrap_or(""),
            message: &msg.0,
            at: Civil::of(SystemTime::now()),
        };
        let mut out = String::with_capacity(128);
        match CURRENT.read().ok().as_deref() {
            Some(Some(Current {
                format: LogFormat::Text(p),
                escaped,
            })) => render(p, &line, *escaped, &mut out),
            Some(Some(Current {
                format: LogFormat::Json(fields),
                escaped,
            })) => {
                out.push('{');
                for (i, (k, p)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push('"');
                    json_escape(k, &mut out);
                    out.push_str("\":\"");
                    let mut v = String::new();
                    render(p, &line, *escaped, &mut v);
                    json_escape(&v, &mut out);
                    out.push('"');
                }
                out.push('}');
            }
            _ => {
                if let Ok(p) = Pattern::parse(DEFAULT) {
                    render(&p, &line, false, &mut out);
                }
            }
        }
        writeln!(writer, "{out}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn line(message: &str) -> Line<'_> {
        Line {
            level: Level::WARN,
            logger: "upstream",
            file: "proxy/src/cluster/mod.rs",
            line: 42,
            module: "ferry::cluster",
            message,
            at: Civil::of(UNIX_EPOCH + Duration::new(1_709_211_845, 123_456_789)),
        }
    }

    fn show(p: &str, message: &str, escaped: bool) -> String {
        let mut out = String::new();
        render(
            &Pattern::parse(p).expect("pattern"),
            &line(message),
            escaped,
            &mut out,
        );
        out
    }

    #[test]
    fn istio_pattern() {
        assert_eq!(
            show("%Y-%m-%dT%T.%fZ\t%l\tenvoy %n %g:%#\t%v", "a\nb", false),
            "2024-02-29T13:04:05.123456Z\twarning\tenvoy upstream proxy/src/cluster/mod.rs:42\ta\nb"
        );
        assert_eq!(
            show("%v|%_|%j", "a\n\"b\"", false),
            "a\n\"b\"|a\\n\"b\"|a\\n\\\"b\\\""
        );
        assert_eq!(show("%v", "a\nb", true), "a\\nb");
    }

    #[test]
    fn padding_and_truncation() {
        assert_eq!(
            show("[%8l][%-8L][%=7n][%3!l]", "", false),
            "[ warning][W       ][upstream][war]"
        );
        assert_eq!(show("[%=10n]", "", false), "[ upstream ]");
    }

    #[test]
    fn unknown_flag_is_an_error() {
        assert!(Pattern::parse("%Q").is_err());
        assert!(Pattern::parse("abc %").is_err());
    }
}
