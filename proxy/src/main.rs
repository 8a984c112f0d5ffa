//! `ferry`: Envoy's command line, Envoy's bootstrap, Ferry's data path (see the library).

fn main() -> std::process::ExitCode {
    ferry::app::main()
}
