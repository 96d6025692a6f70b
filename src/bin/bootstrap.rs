//! The Lambda function's entry point (`cargo build --release --features lambda --bin bootstrap`):
//! a worker fed by the queue as the function's event source.

/// The same allocator as the `avesa-console` binary (see its `main.rs`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    avesa_console::cli::lambda_main()
}
