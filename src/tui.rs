//! The interactive console: one `App` model, a pure `update(msg) -> effects`, pure views,
//! themes, and a runtime loop that talks to the engine only through its `EngineHandle`.
//!
//! Nothing here touches the job store or files while updating or drawing: effects are run
//! by `runtime` on tasks, and their results come back as messages.
//!
//! Messages are keys, clicks and the wheel (with `--mouse`), resizes, ticks (for rates and ETAs),
//! snapshots, engine events, log batches and the answers to effects. Effects (`Engine(Command)`,
//! `Preview`, `LoadTheme`, `Quit`) are carried out by `runtime` on tasks whose results come back
//! through one bounded queue. The loop
//! drains what is queued, then draws once, and only when `update` marked the model dirty, at most
//! one frame per `FRAME`: no busy loop, and a burst of events costs one frame. Tables keep their
//! filtered, sorted row order in the model (rebuilt on a snapshot, a filter or a sort key), and
//! views build only the rows on screen. `terminal::enter` installs a panic hook that restores the
//! terminal before the message prints, and a guard restores it on every other exit. While the
//! console owns the screen, tracing writes only to the JSON-lines file.
//!
//! Read-only mode refuses the keys that change jobs or data (`Action::is_mutating`: trigger,
//! resume, retry, cancel, pause, and `T`, since a transform rewrites canonical tables). `v` stays
//! allowed: verification reads the source's counts and the landed parts and only stores its
//! findings.

pub mod action;
pub mod app;
pub mod fixtures;
pub mod form;
pub mod format;
pub mod keymap;
pub mod logs;
pub mod runtime;
pub mod terminal;
pub mod theme;
pub mod update;
pub mod view;
pub mod views;

pub use app::App;
pub use runtime::{ConsoleError, ConsoleOptions, run};
pub use theme::Theme;
pub use update::{Effect, Msg, update};
