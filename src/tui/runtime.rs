//! The console's event loop: turns key presses, engine events, snapshots, log lines and
//! clock ticks into messages, runs `update`, carries out its effects on tasks, and redraws
//! only when the model says something changed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use crossterm::event::{Event, EventStream, KeyEventKind};
use futures::StreamExt;
use tokio::sync::{broadcast, mpsc, watch};

use super::app::{App, CloudMode};
use super::keymap::Keymap;
use super::logs::LogFeed;
use super::terminal;
use super::theme::Theme;
use super::update::{Effect, Msg, update};
use super::views;
use crate::engine::handle::Snapshot;
use crate::engine::{EngineEvent, EngineHandle};

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

pub struct ConsoleOptions {
    pub read_only: bool,
    pub theme: Theme,
    /// Where `:theme NAME` looks for `NAME.toml` before the built-in themes.
    pub themes_dir: Option<PathBuf>,
    /// Log lines kept in memory.
    pub log_capacity: usize,
    /// Local jobs, or the cloud deployment's (the handle and the log feed must agree).
    pub cloud: CloudMode,
    /// The keys in effect (`keys.toml` over the defaults); its `mouse` turns on mouse capture.
    pub keymap: Keymap,
}

/// Messages waiting for the loop; producers wait when it is full instead of piling up.
const QUEUE: usize = 256;
/// The shortest time between two frames (about 30 per second at most).
const FRAME: Duration = Duration::from_millis(33);

/// Runs the console until `:quit` or Ctrl-C.
pub async fn run(
    handle: EngineHandle,
    logs: LogFeed,
    options: ConsoleOptions,
) -> Result<(), ConsoleError> {
    let logs_name = logs.name();
    let per_job = logs.is_per_job();
    let (mut term, _guard) = terminal::enter(options.keymap.mouse)?;
    let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE);
    // The job the logs pane is filtered to, from the model after each update.
    let (focus_tx, focus) = watch::channel(None::<String>);
    let mut tasks = vec![
        tokio::spawn(read_keys(tx.clone())),
        tokio::spawn(forward_snapshots(handle.snapshot(), tx.clone())),
        tokio::spawn(forward_events(handle.subscribe(), tx.clone())),
        tokio::spawn(poll_logs(logs, focus, tx.clone())),
        tokio::spawn(tick(tx.clone())),
    ];
    let ConsoleOptions {
        read_only,
        theme,
        themes_dir,
        log_capacity,
        cloud,
        keymap,
    } = options;
    let mut app = App::new(theme, read_only, Utc::now());
    app.cloud = cloud;
    app.keymap = keymap;
    app.logs = super::logs::LogPane::new(log_capacity);
    app.logs.source_name = logs_name;
    app.logs.per_job = per_job;
    let size = term.size()?;
    update(
        &mut app,
        Msg::Resize {
            width: size.width,
            height: size.height,
        },
    );
    let runner = EffectRunner {
        handle,
        tx,
        themes_dir,
    };
    let mut last_draw = Instant::now()
        .checked_sub(FRAME)
        .unwrap_or_else(Instant::now);
    while let Some(effects) = next_batch(&mut app, &mut rx, last_draw).await {
        let go_on = carry_out_all(effects, &mut app, &mut term, &runner, &mut tasks).await?;
        if !go_on || app.quit {
            break;
        }
        let job = app.logs.chunk.as_ref().map(|c| c.job_id.clone());
        if *focus_tx.borrow() != job {
            focus_tx.send_replace(job);
        }
        // At most one frame per FRAME: a burst of events costs one draw, not hundreds.
        if app.dirty && last_draw.elapsed() >= FRAME {
            term.draw(|f| views::render(f, &app))?;
            app.dirty = false;
            last_draw = Instant::now();
        }
    }
    for t in tasks {
        t.abort();
    }
    Ok(())
}

/// Carries out a batch of effects: the clipboard and the pager here (they need the
/// terminal), the rest on tasks. False when one of them is `Quit`.
async fn carry_out_all(
    effects: Vec<Effect>,
    app: &mut App,
    term: &mut terminal::Tui,
    runner: &EffectRunner,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<bool, ConsoleError> {
    let mut go_on = true;
    for effect in effects {
        go_on &= match effect {
            Effect::Clipboard(text) => {
                terminal::copy(&text)?;
                true
            }
            Effect::Pager { title, text } => {
                // The key reader goes while the pager owns the terminal, or it would take
                // the pager's keys.
                let keys = tasks.remove(0);
                keys.abort();
                let _ = keys.await;
                let result = run_pager(term, title, text).await;
                tasks.insert(0, tokio::spawn(read_keys(runner.tx.clone())));
                if let Err(e) = result {
                    app.set_status(super::app::StatusKind::Error, format!("o: $PAGER: {e}"));
                }
                app.dirty = true;
                true
            }
            other => runner.carry_out(other),
        };
    }
    Ok(go_on)
}

/// Suspends the console, shows `text` in `$PAGER` and takes the screen back, whatever the
/// pager did.
async fn run_pager(term: &mut terminal::Tui, title: String, text: String) -> std::io::Result<()> {
    terminal::suspend()?;
    let pager = terminal::pager_command();
    let shown = tokio::task::spawn_blocking(move || terminal::page(&pager, &title, &text))
        .await
        .map_err(std::io::Error::other);
    terminal::resume(term)?;
    match shown?? {
        s if s.success() => Ok(()),
        s => Err(std::io::Error::other(format!("the pager exited with {s}"))),
    }
}

/// Updates the model with the next message and whatever else is waiting, so a burst is drawn
/// once; with a change waiting to be drawn, waits for a message only until the next frame is
/// due. `None` once every producer is gone.
async fn next_batch(
    app: &mut App,
    rx: &mut mpsc::Receiver<Msg>,
    last_draw: Instant,
) -> Option<Vec<Effect>> {
    let first = if app.dirty {
        match tokio::time::timeout(FRAME.saturating_sub(last_draw.elapsed()), rx.recv()).await {
            Ok(Some(msg)) => Some(msg),
            Ok(None) => return None,
            Err(_) => None,
        }
    } else {
        Some(rx.recv().await?)
    };
    let mut effects = match first {
        Some(msg) => update(app, msg),
        None => Vec::new(),
    };
    for _ in 0..QUEUE {
        match rx.try_recv() {
            Ok(msg) => effects.extend(update(app, msg)),
            Err(_) => break,
        }
    }
    Some(effects)
}

/// Carries out `update`'s effects on tasks; their results come back as messages.
struct EffectRunner {
    handle: EngineHandle,
    tx: mpsc::Sender<Msg>,
    /// Where `:theme NAME` looks first.
    themes_dir: Option<PathBuf>,
}

impl EffectRunner {
    /// Starts the effect; false when it is `Quit`.
    fn carry_out(&self, effect: Effect) -> bool {
        match effect {
            Effect::Quit => return false,
            // The loop writes these itself: they need the terminal.
            Effect::Clipboard(_) | Effect::Pager { .. } => {}
            Effect::Engine(command) => {
                let (handle, tx) = (self.handle.clone(), self.tx.clone());
                tokio::spawn(async move {
                    let result = handle
                        .send(command.clone())
                        .await
                        .map_err(|e| e.to_string());
                    let _ = tx.send(Msg::Done { command, result }).await;
                });
            }
            Effect::Preview {
                generation,
                request,
            } => {
                let (handle, tx) = (self.handle.clone(), self.tx.clone());
                tokio::spawn(async move {
                    let result = match handle.preview(&request, Utc::now()).await {
                        Ok(p) => Ok(handle.with_allocation(p).await),
                        Err(e) => Err(e),
                    };
                    let _ = tx.send(Msg::Preview { generation, result }).await;
                });
            }
            Effect::LoadTheme(name) => {
                let (dir, tx) = (self.themes_dir.clone(), self.tx.clone());
                tokio::spawn(async move {
                    let result = tokio::task::spawn_blocking(move || {
                        Theme::load(&name, dir.as_deref()).map_err(|e| e.to_string())
                    })
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()));
                    let _ = tx.send(Msg::Theme(result)).await;
                });
            }
        }
        true
    }
}

/// Keys and resizes.
async fn read_keys(keys: mpsc::Sender<Msg>) {
    let mut input = EventStream::new();
    while let Some(Ok(ev)) = input.next().await {
        let msg = match ev {
            Event::Key(k) if k.kind != KeyEventKind::Release => Msg::Key(k),
            Event::Resize(width, height) => Msg::Resize { width, height },
            Event::Mouse(m) => Msg::Mouse(m),
            _ => continue,
        };
        if keys.send(msg).await.is_err() {
            return;
        }
    }
}

/// Snapshots, the current one first.
async fn forward_snapshots(mut watch: watch::Receiver<Arc<Snapshot>>, snaps: mpsc::Sender<Msg>) {
    loop {
        let snap = watch.borrow_and_update().clone();
        if snaps.send(Msg::Snapshot(snap)).await.is_err() {
            return;
        }
        if watch.changed().await.is_err() {
            return;
        }
    }
}

/// Engine events: a lagging receiver skips some; the snapshot still tells the truth.
async fn forward_events(mut sub: broadcast::Receiver<EngineEvent>, events: mpsc::Sender<Msg>) {
    loop {
        match sub.recv().await {
            Ok(event) => {
                if events
                    .send(Msg::Engine {
                        event,
                        at: Utc::now(),
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Log lines. A feed read per job (CloudWatch) reads the one `focus` names.
async fn poll_logs(
    mut logs: LogFeed,
    mut focus: watch::Receiver<Option<String>>,
    lines: mpsc::Sender<Msg>,
) {
    loop {
        if focus.has_changed().unwrap_or(false) {
            logs.focus(focus.borrow_and_update().as_deref());
        }
        let msg = match logs.poll().await {
            Ok(batch) if batch.is_empty() => None,
            Ok(batch) => Some(Msg::Logs(batch)),
            Err(e) => Some(Msg::LogError(e.to_string())),
        };
        let more = matches!(&msg, Some(Msg::Logs(_)));
        if let Some(m) = msg
            && lines.send(m).await.is_err()
        {
            return;
        }
        // A batch means more may be waiting: read on without a pause. A new focus is read
        // at once.
        if !more {
            tokio::select! {
                _ = tokio::time::sleep(logs.poll_every()) => {}
                changed = focus.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let job = focus.borrow_and_update().clone();
                    logs.focus(job.as_deref());
                }
            }
        }
    }
}

/// The clock, for rates, ETAs and fading messages.
async fn tick(ticks: mpsc::Sender<Msg>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        if ticks.send(Msg::Tick(Utc::now())).await.is_err() {
            return;
        }
    }
}
