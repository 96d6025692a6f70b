//! The kinds of screen the console has: what the keymap, help and hints are per.

/// A kind of screen (a `Route` says which one is shown and of what).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum View {
    Tenants,
    Jobs,
    Detail,
    Logs,
    Health,
    Pulse,
}

impl View {
    /// The view's name as the help title and the status bar say it.
    pub fn name(&self) -> &'static str {
        match self {
            View::Tenants => "tenants",
            View::Jobs => "jobs",
            View::Detail => "job detail",
            View::Logs => "logs",
            View::Health => "health",
            View::Pulse => "pulse",
        }
    }
}
