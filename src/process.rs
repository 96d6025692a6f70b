//! This host and its processes, as lease owners and spill folders name them.

/// This host's name as lease owner ids and spill folders show it (no `:`, `/` or `\`).
pub fn local_host() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
        .replace([':', '/', '\\'], "_")
}

/// True when process `pid` of this host is known to have ended: Linux says so through
/// `/proc`. Elsewhere, and for this process, nothing is known to have ended.
pub fn is_gone(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    pid != std::process::id() && proc.is_dir() && !proc.join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_lives_and_an_impossible_pid_is_gone() {
        assert!(!is_gone(std::process::id()));
        // Beyond Linux's pid_max.
        assert_eq!(
            is_gone(4_294_967_290),
            std::path::Path::new("/proc").is_dir()
        );
    }
}
