//! The `avesa-console` binary: parses the command line and hands over to `cli`.

/// jemalloc, configured in `.cargo/config.toml` to return freed pages at once: glibc's
/// allocator kept what each thread freed in that thread's arena, so each step of a run started
/// from what the steps before it had freed (see ARCHITECTURE.md's dependency table).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    avesa_console::cli::main()
}
