//! The interactive console: one `App` model, a pure `update(msg) -> effects`, pure views,
//! themes, and a runtime loop that talks to the engine only through its `EngineHandle`.
//!
//! Nothing here touches the job store or files while updating or drawing: effects are run
//! by `runtime` on tasks, and their results come back as messages.

pub mod action;
pub mod app;
pub mod fixtures;
pub mod form;
pub mod format;
pub mod logs;
pub mod runtime;
pub mod terminal;
pub mod theme;
pub mod update;
pub mod views;

pub use app::App;
pub use runtime::{ConsoleError, ConsoleOptions, run};
pub use theme::Theme;
pub use update::{Effect, Msg, update};
