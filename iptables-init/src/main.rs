//! `ferry-iptables`: the init-container command that redirects a pod's traffic to the sidecar
//! (a drop-in for `istio-iptables`). Exit codes: 0 done, 2 bad flags or values (nothing was
//! touched), 1 a failure while reading or changing the pod's network.

fn main() {
    if let Err(e) = ferry_iptables::run(std::env::args_os()) {
        match &e {
            ferry_iptables::error::Error::Help(text) => print!("{text}"),
            // clap's own text (with --help output when asked for).
            ferry_iptables::error::Error::Usage(msg) => eprint!("{msg}"),
            _ => eprintln!("ferry-iptables: {e}"),
        }
        std::process::exit(e.exit_code());
    }
}
