//! The `avesa-console` binary: parses the command line and hands over to `cli`.

fn main() -> std::process::ExitCode {
    avesa_console::cli::main()
}
