//! The Lambda function's entry point (`cargo build --release --features lambda --bin bootstrap`):
//! a worker fed by the queue as the function's event source.

fn main() -> std::process::ExitCode {
    avesa_console::cli::lambda_main()
}
